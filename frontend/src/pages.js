// Texts of the study and the few pages shown outside the jsPsych timeline (refusals, fatal errors, the end).
//
// Texts can be overridden by the server's /api/config "texts" object (same keys), so a lab can adapt the
// consent form to its ethics approval without rebuilding the page.

export const DEFAULT_TEXTS = {
  consent: `
    <h1>Welcome</h1>
    <p>This is a study on how people understand the inner workings of artificial neural networks.
       TIME_SENTENCE You will look at images and answer with the mouse or the keyboard.</p>
    <p>We store only your answers, response times and the comments you choose to give. We do not store your
       name, IP address or browser details; platform ids are stored only in a keyed, irreversible form.
       Participation is voluntary and you may stop at any time with the "Stop the study" button.</p>
    <p>By clicking "I agree" you confirm that you are at least 18 years old and consent to take part.</p>`,
  consent_button: "I agree",
  // The server fills it from the study's time limit (the exclusion criteria's longest session), unless replaced.
  time_sentence: "",
  instructions: [
    `<h1>Instructions (1/3)</h1>
     <p>A neural network that recognizes objects in photos is built of many <em>units</em>.
        Each unit responds (is <em>activated</em>) more strongly to some image content than to other content.</p>
     <p>In each trial you learn about one unit and then predict how it responds.</p>`,
    `<h1>Instructions (2/3)</h1>
     <p>REFERENCES_SENTENCE</p>
     <p>On the right you see a <strong>query image</strong>. Below it are two copies of that image in which a
        different square patch is hidden. Your task: decide <strong>which of the two copies activates the unit
        more strongly</strong>.</p>`,
    `<h1>Instructions (3/3)</h1>
     <p>Answer with one of six buttons: <strong>3 2 1 | 1 2 3</strong>. The left three choose the left image,
        the right three the right image. The number is your confidence: 3 = sure, 2 = fairly sure, 1 = guessing.
        Keys <strong>1</strong> to <strong>6</strong> press the six buttons from left to right.</p>
     <p>PRACTICE_SENTENCE Some trials are easy checks of attention. Please answer every trial carefully;
        there is no time limit, but try not to think longer than necessary.</p>`,
  ],
  references_sentence:
    "On the left of the screen you see 9 images that strongly activate the unit: they show what the unit responds to.",
  no_references_sentence: "You will not see any explanation of the unit: rely on your intuition.",
  debrief: `
    <h1>Almost done</h1>
    <p>Thank you! Do you have any comments about the study (for example, a strategy you used, or anything
       that was unclear)? This is optional.</p>
    <textarea name="comments" rows="5" cols="60" maxlength="5000" aria-label="comments"></textarea>`,
  already_participated: `<h1>Thank you for your interest</h1>
    <p>Our records show that you have already taken part in this study, so you cannot take part again.
       You may close this page.</p>`,
  no_tasks: `<h1>Thank you for your interest</h1>
    <p>All places in this study are currently taken. Please try again later, or close this page.</p>`,
  missing_worker_id: `<h1>Please open this study from the platform</h1>
    <p>This page was opened without the participant id that the study's platform adds to its link.
       Please start the study from the platform's page.</p>`,
  session_elsewhere: `<h1>Your session is open elsewhere</h1>
    <p>You have started this study in another browser or on another device. Please continue there.</p>`,
  preview: `<h1>Preview</h1>
    <p>This is a preview. Accept the HIT to start the study. Below is an example of a trial.</p>`,
  stop_confirm: "Do you want to stop the study? You cannot continue it later, and no completion code will be shown.",
  returned: `<h1>You have stopped the study</h1>
    <p>Thank you for your time. Please also return the study on the platform you came from (on Prolific:
       "Stop without completing"), so that your place goes to someone else. You may close this page.</p>`,
  expired: `<h1>This session has timed out</h1>
    <p>Your session was inactive for too long and your place was given to someone else. Thank you for your time;
       you may close this page.</p>`,
};

/** Replace the whole page body's visible content with a message (used when the timeline cannot go on). */
export function showMessage(html) {
  const target = document.querySelector(".jspsych-content") ?? document.getElementById("vp-root");
  target.innerHTML = `<div class="vp-message">${html}</div>`;
}

/** Show or hide the small "saving…" note in the corner. */
export function savingNote(visible, text = "saving…") {
  const note = document.getElementById("vp-saving");
  if (!note) return;
  note.textContent = text;
  note.hidden = !visible;
}

// MTurk's ExternalQuestion form goes back to one of these sites only (`turkSubmitTo` is a URL parameter:
// anything else would post the assignment to a stranger).
const MTURK_SUBMIT_HOSTS = ["https://www.mturk.com", "https://workersandbox.mturk.com"];

/** Where an MTurk assignment is submitted (`turkSubmitTo` + /mturk/externalSubmit), or null when not on MTurk. */
export function mturkSubmitUrl(search) {
  const params = new URLSearchParams(search);
  const base = (params.get("turkSubmitTo") ?? "").replace(/\/+$/, "");
  return MTURK_SUBMIT_HOSTS.includes(base) && params.get("assignmentId") ? `${base}/mturk/externalSubmit` : null;
}

/** The last page: the completion code; for Prolific a link (we also redirect automatically); on MTurk the
 * ExternalQuestion form that submits the assignment. */
export function completionHtml(code, redirectUrl, mturk = null) {
  const redirect = redirectUrl
    ? `<p>You will be taken back to Prolific in a few seconds.
         If nothing happens, <a id="vp-redirect" href="${escapeHtml(redirectUrl)}">click here</a>.</p>`
    : mturk
      ? `<form class="vp-mturk-submit" method="POST" action="${escapeHtml(mturk.url)}">
           <input type="hidden" name="assignmentId" value="${escapeHtml(mturk.assignmentId)}">
           <input type="hidden" name="completion_code" value="${escapeHtml(code)}">
           <p>Please submit the HIT: <button id="vp-mturk-submit" type="submit">Submit HIT</button></p></form>`
      : "<p>Please copy this code into the platform to confirm that you completed the study.</p>";
  return `<h1>Thank you!</h1>
    <p>Your answers have been saved. Your completion code is:</p>
    <p class="vp-code" id="vp-completion-code">${escapeHtml(code)}</p>
    ${redirect}`;
}

/** The MTurk preview: the preview note, the instructions, and an example trial's images (not answerable). */
export function previewHtml(texts, example) {
  const img = (src, cls) => `<img class="${cls}" src="${escapeHtml(src)}" alt="">`;
  const references = example.references.map((src) => img(src, "vp-preview-ref")).join("");
  const pages = texts.instructions
    .map((page) => page.replace("REFERENCES_SENTENCE", texts.references_sentence).replace("PRACTICE_SENTENCE", ""))
    .join("");
  return `${texts.preview}${pages}
    <div class="vp-preview">${references ? `<div>${references}</div>` : ""}
      <div>${img(example.query, "vp-preview-query")}<div>${example.options.map((o) => img(o, "vp-preview-option")).join("")}</div></div>
    </div>`;
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
