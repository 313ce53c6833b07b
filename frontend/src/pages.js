// Texts of the study and the few pages shown outside the jsPsych timeline (refusals, fatal errors, the end).
//
// Texts can be overridden by the server's /api/config "texts" object (same keys), so a lab can adapt the
// consent form to its ethics approval without rebuilding the page.

import { instructionText } from "./instructions.js";

export const DEFAULT_TEXTS = {
  consent: `
    <h1>About this study</h1>
    <p>This is a study on how people understand the inner workings of artificial neural networks.
       TIME_SENTENCE You will look at images and answer with the mouse or the keyboard.</p>
    <p>We store only your answers, response times and the comments you choose to give. We do not store your
       name, IP address or browser details; platform ids are stored only in a keyed, irreversible form.
       Participation is voluntary and you may stop at any time with the "Stop the study" button.</p>
    <p>By clicking "I agree" you confirm that you are at least 18 years old and consent to take part.</p>`,
  consent_button: "I agree",
  // The server fills it from the study's time limit (the exclusion criteria's longest session), unless replaced.
  time_sentence: "",
  welcome: "<h1>Welcome to this experiment!</h1><p>It will start soon.</p>",
  // The authors' 15 pages (conditions with references) and 14 (without), in their order; see instructions.js for
  // the markers. Their "favorite images of a machine" are called what the trial page calls them.
  instructions: [
    `<p>In this experiment, you will be shown images on the screen and asked to make a response by clicking your
       mouse.</p>`,
    `<p>The experiment consists of multiple trials. We will now explain to you how a single trial works.</p>`,
    `<p>On the left side of the screen, you see a group of example images. These are images that strongly activate
       one unit of an artificial neural network REFERENCES_CLAUSE. Usually, these images share at least one common
       aspect.</p>TRIAL(references)`,
    `<p>At the top right of the screen, you see one more image. This is yet another image that strongly activates
       the unit. Do you spot the common aspect in it again?</p>TRIAL(query)`,
    `<p>At the bottom right of the screen, you see two more images. In each image, a square has been placed to cover
       part of the image. This part is hidden from the unit.</p>TRIAL(options)`,
    `<p>The question you have to answer is always the following: <i>Which image at the bottom right activates the
       unit more strongly?</i> In other words, in which image do you still see the common aspect of the images on
       the left?</p>TRIAL(question)`,
    `<p>This is how you answer: below the two images at the bottom right you see two rows of numbers.</p>
     TRIAL(buttons)`,
    `<p>If you think the <b>left</b> image activates the unit more strongly, choose a number from the <b>left</b>
       row of numbers.</p>TRIAL(left)`,
    `<p>If you think the <b>right</b> image activates the unit more strongly, choose a number from the
       <b>right</b> row of numbers.</p>TRIAL(right)`,
    `<p>The value of the number indicates how confident you are in your choice: the higher the number, the higher
       your confidence. If you are not sure, go with your best guess. The keys 1 to 6 press the six numbers from left
       to right.</p>TRIAL(buttons)`,
    `<p>Once you provide your answer, the number you chose is marked.</p>TRIAL(chosen)`,
    `<p>This is the end of one trial. To summarize, your task is to understand what the unit responds to from the
       images on the left, and then to choose the image at the bottom right that still contains it.</p>TRIAL(all)`,
    `<p>In each trial, a different unit is shown, and each trial is independent of the other ones. The common aspect
       may have to do with objects, parts of objects, patterns, colour, or even more abstract aspects.</p>
     TRIAL(all)`,
    `<p>AFTER_ANSWER</p>TRIAL(after)`,
    `<p>This is the last opportunity to go back and re-read the instructions with the <i>Back</i> button.
       PRACTICE_SENTENCE</p>TRIAL(after)`,
  ],
  instructions_none: [
    `<p>In this experiment, you will be shown images on the screen and asked to make a response by clicking your
       mouse.</p>`,
    `<p>The experiment consists of multiple trials. We will now explain to you how a single trial works.</p>`,
    `<p>In the middle of the screen, you see one image. This is an image that strongly activates one unit of an
       artificial neural network.</p>TRIAL(query)`,
    `<p>Below that image, you see two more images. In each image, a square has been placed to cover part of the upper
       image. This part is hidden from the unit.</p>TRIAL(options)`,
    `<p>The question you have to answer is always the following: <i>Which image at the bottom activates the unit
       more strongly?</i></p>TRIAL(question)`,
    `<p>This is how you answer: below the two images at the bottom you see two rows of numbers.</p>TRIAL(buttons)`,
    `<p>If you think the <b>left</b> image activates the unit more strongly, choose a number from the <b>left</b>
       row of numbers.</p>TRIAL(left)`,
    `<p>If you think the <b>right</b> image activates the unit more strongly, choose a number from the
       <b>right</b> row of numbers.</p>TRIAL(right)`,
    `<p>The value of the number indicates how confident you are in your choice: the higher the number, the higher
       your confidence. If you are not sure, go with your best guess. The keys 1 to 6 press the six numbers from left
       to right.</p>TRIAL(buttons)`,
    `<p>Once you provide your answer, the number you chose is marked.</p>TRIAL(chosen)`,
    `<p>This is the end of one trial. To summarize, your task is to choose the image at the bottom that still
       activates the unit more strongly.</p>TRIAL(all)`,
    `<p>In each trial, a different unit is shown, and each trial is independent of the other ones. The covered image
       parts may have to do with objects, parts of objects, patterns, colour, or even more abstract aspects.</p>
     TRIAL(all)`,
    `<p>AFTER_ANSWER</p>TRIAL(after)`,
    `<p>This is the last opportunity to go back and re-read the instructions with the <i>Back</i> button.
       PRACTICE_SENTENCE</p>TRIAL(after)`,
  ],
  // The exemplar task: IMI's pages (brendel-group/imi, mturk/2afc/task.js), in their order, with the same markers;
  // IMI says "clicking your mouse" and gives no keys; here the keys are mentioned as on the occlusion pages.
  instructions_exemplar: [
    `<p>In this experiment, you will be shown images on the screen and asked to make a response by clicking your
       mouse.</p>`,
    `<p>The experiment consists of multiple trials. We will now explain to you how a single trial works.</p>`,
    `<p>On the left and the right side of the screen, you see two groups of example images. They are labeled
       <b>Left Examples</b> and <b>Right Examples</b>.</p>TRIAL(examples)`,
    `<p>At the center of the screen, you see two more images. While one image belongs to the Left Examples, the
       other one belongs to the Right Examples.</p>TRIAL(queries)`,
    `<p>The question you have to answer is always the following: <i>Which image at the center matches the
       <b>Right Examples</b> better?</i></p>TRIAL(question)`,
    `<p>Here is how you answer: below the upper center image you see a row of numbers.</p>TRIAL(upper)`,
    `<p>Above the lower center image you also see a row of numbers.</p>TRIAL(lower)`,
    `<p>If you think the <b>upper</b> image better matches the Right Examples, choose a number from the
       <b>upper</b> row of numbers.</p>TRIAL(upper)`,
    `<p>If you think the <b>lower</b> image better matches the Right Examples, choose a number from the
       <b>lower</b> row of numbers.</p>TRIAL(lower)`,
    `<p>The value of the number indicates how confident you are in your choice: the higher the number, the higher
       your confidence. If you are not sure, go with your best guess. The keys 1 to 3 answer for the upper image and
       4 to 6 for the lower one.</p>TRIAL(buttons)`,
    `<p>The first image of each group of example images is special and might look slightly different from the rest
       of the group. When in doubt, pay more attention to this image.</p>TRIAL(examples)`,
    `<p>Once you provide your answer, the number you chose is marked.</p>TRIAL(chosen)`,
    `<p>AFTER_ANSWER</p>TRIAL(after)`,
    `<p>This is the end of one trial. Please note that each trial is independent of all other trials: what you
       learned in one does not carry over to the next.</p>TRIAL(all)`,
    `<p>This is the last opportunity to go back and re-read the instructions with the <i>Back</i> button.
       PRACTICE_SENTENCE</p>TRIAL(after)`,
  ],
  instructions_exemplar_none: [
    `<p>In this experiment, you will be shown images on the screen and asked to make a response by clicking your
       mouse.</p>`,
    `<p>The experiment consists of multiple trials. We will now explain to you how a single trial works.</p>`,
    `<p>At the center of the screen, you see two images. One of them strongly activates one unit of an artificial
       neural network, the other one activates it weakly.</p>TRIAL(queries)`,
    `<p>The question you have to answer is always the following: <i>Which image activates the unit more
       strongly?</i> You are not shown examples of the unit: go with your best guess.</p>TRIAL(question)`,
    `<p>Here is how you answer: below the upper image you see a row of numbers, above the lower image another one.
       Choose a number from the row of the image you pick.</p>TRIAL(buttons)`,
    `<p>The value of the number indicates how confident you are in your choice: the higher the number, the higher
       your confidence. The keys 1 to 3 answer for the upper image and 4 to 6 for the lower one.</p>TRIAL(buttons)`,
    `<p>Once you provide your answer, the number you chose is marked.</p>TRIAL(chosen)`,
    `<p>AFTER_ANSWER</p>TRIAL(after)`,
    `<p>This is the last opportunity to go back and re-read the instructions with the <i>Back</i> button.
       PRACTICE_SENTENCE</p>TRIAL(after)`,
  ],
  references_clause_blur: "(blurred, except the part that activates the unit most)",
  after_answer_practice: `In the practice trials you are then told whether your answer was right, and the
    <i>Continue</i> button takes you to the next trial. In the main trials, the next trial follows as soon as you
    answer.`,
  after_answer_none: "As soon as you answer, the next trial follows.",
  after_answer_practice_continue: `In the practice trials you are then told whether your answer was right. By
    clicking on the <i>Continue</i> button you continue to the next trial.`,
  after_answer_continue: "By clicking on the <i>Continue</i> button you continue to the next trial.",
  submit_page: `<p>Press Continue to submit your data; this can take a moment.</p>
    <p>Please do not close the window until we tell you to do so.</p>`,
  practice_sentence: `Otherwise, we will start with a few practice trials so that you can familiarize yourself with
    the task; they are repeated until all your answers are right.`,
  no_practice_sentence: "Otherwise, the trials start now.",
  fullscreen: `<p>To ensure you can see all relevant information, we will switch to fullscreen mode when you press
    the button below.</p><p>Please do not leave the fullscreen mode until the end of the experiment.</p>`,
  fullscreen_button: "Switch to fullscreen",
  too_small: `<h1>Please enlarge this window</h1><p>The study needs a window of at least MIN_SIZE pixels; this one
    is CURRENT_SIZE. Please maximize the window (or use a larger screen); the study goes on as soon as it is large
    enough.</p>`,
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
  start: `<h1>An academic study on how neural networks see</h1>
    <p>The study opens in a window of its own, so that it can use the whole screen. Press the button below; if
       nothing opens, please allow pop-ups for this site. Keep this page open: when you have finished the study,
       your HIT is submitted here by itself.</p>`,
  start_button: "Open the study",
  popup_blocked: `<p><b>The study's window was blocked.</b> Please allow pop-ups for this site and press the button
    again.</p>`,
  submitting: `<h1>Thank you!</h1><p>Your HIT is being submitted…</p>`,
  in_own_window: `<p>Your HIT is submitted on the MTurk page you came from; you may close this window. Should that
    page be closed, submit here:</p>`,
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

/** MTurk's ExternalQuestion form: it submits the assignment with the completion code. */
export function mturkForm(url, assignmentId, code) {
  return `<form class="vp-mturk-submit" method="POST" action="${escapeHtml(url)}">
      <input type="hidden" name="assignmentId" value="${escapeHtml(assignmentId)}">
      <input type="hidden" name="completion_code" value="${escapeHtml(code)}">
      <p>Please submit the HIT: <button id="vp-mturk-submit" type="submit">Submit HIT</button></p></form>`;
}

/** The last page: the completion code; for Prolific a link (we also redirect automatically); on MTurk the
 * ExternalQuestion form that submits the assignment. */
export function completionHtml(code, redirectUrl, mturk = null) {
  const redirect = redirectUrl
    ? `<p>You will be taken back to Prolific in a few seconds.
         If nothing happens, <a id="vp-redirect" href="${escapeHtml(redirectUrl)}">click here</a>.</p>`
    : mturk
      ? `${mturk.ownWindow ? mturk.ownWindow : ""}${mturkForm(mturk.url, mturk.assignmentId, code)}`
      : "<p>Please copy this code into the platform to confirm that you completed the study.</p>";
  return `<h1>Thank you!</h1>
    <p>Your answers have been saved. Your completion code is:</p>
    <p class="vp-code" id="vp-completion-code">${escapeHtml(code)}</p>
    ${redirect}`;
}

/** The MTurk preview: the preview note, the instructions' text, and the example trial's images (not answerable). */
export function previewHtml(texts, example, task = "occlusion") {
  if (!example) return `${texts.preview}${instructionText(texts, task)}`;
  const img = (src, cls) => `<img class="${cls}" src="${escapeHtml(src)}" alt="">`;
  const group = (images) => images.map((src) => img(src, "vp-preview-ref")).join("");
  const references = group(example.references);
  const lows = group(example.min_references ?? []);
  const query = example.query ? img(example.query, "vp-preview-query") : "";
  return `${texts.preview}${instructionText(texts, task)}
    <div class="vp-preview">${lows ? `<div>${lows}</div>` : ""}
      <div>${query}<div>${example.options.map((o) => img(o, "vp-preview-option")).join("")}</div></div>
      ${references ? `<div>${references}</div>` : ""}
    </div>`;
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
