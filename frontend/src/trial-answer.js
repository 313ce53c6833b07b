// What every trial plugin shares: show the trial, start the clock once its images are decoded, take one answer
// by mouse or key, and end only after `on_answer` (the experiment's save-to-server step) has resolved, so the next
// trial can never be shown before the answer is stored. Whatever `on_answer` resolves to is merged into the data.
// The answer carries the trial's attention record (attention.js): times and milliseconds the participant was away.
import { attentionMark, attentionSince } from "./attention.js";

/**
 * @param display_element jsPsych's display element
 * @param trial the plugin's trial parameters (index, on_answer)
 * @param html the trial's markup: one `.vp-trial` whose `.vp-conf` buttons carry data-button, data-choice and
 *   data-confidence
 * @param keys the keyboard keys of data-button 0, 1, ...
 */
export async function answerTrial(display_element, trial, html, keys) {
  display_element.innerHTML = html;
  const shown = attentionMark();
  const root = display_element.querySelector(".vp-trial");
  // Start the clock only once every image is decoded and on screen (they are preloaded, so this is quick);
  // a broken image must not block the trial, hence the catch.
  await Promise.all([...root.querySelectorAll("img")].map((el) => el.decode().catch(() => undefined)));
  const buttons = [...root.querySelectorAll(".vp-conf")];
  buttons.forEach((b) => (b.disabled = false));
  const start = performance.now();

  let onKey;
  const answer = await new Promise((resolve) => {
    const pick = (button) => {
      if (!button || button.disabled) return;
      resolve({
        index: trial.index,
        choice: Number(button.dataset.choice),
        confidence: Number(button.dataset.confidence),
        rt: Math.round((performance.now() - start) * 10) / 10,
        ...attentionSince(shown),
        button,
      });
    };
    root.addEventListener("click", (event) => pick(event.target.closest(".vp-conf")));
    // A key held down since the previous trial repeats: only a fresh press answers.
    onKey = (event) => {
      if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
      const i = keys.indexOf(event.key);
      if (i >= 0) pick(buttons.find((b) => Number(b.dataset.button) === i));
    };
    document.addEventListener("keydown", onKey);
  });
  document.removeEventListener("keydown", onKey);
  // One answer per trial: freeze the buttons and mark the chosen one while the answer is being saved.
  buttons.forEach((b) => (b.disabled = true));
  answer.button.classList.add("vp-chosen");
  root.classList.add("vp-answered");
  const { button, ...data } = answer;
  const extra = trial.on_answer ? await trial.on_answer(data) : {};
  if (trial.continue_ms != null) await continueButton(root, trial.continue_ms);
  return { ...data, ...(extra ?? {}) };
}

/** The authors' Continue button: shown `delayMs` after the answer (once it is stored); the trial ends on a click. */
function continueButton(root, delayMs) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "jspsych-btn vp-continue";
  button.textContent = "Continue";
  button.style.visibility = "hidden";
  root.append(button);
  return new Promise((resolve) => {
    setTimeout(() => (button.style.visibility = "visible"), delayMs);
    button.addEventListener("click", () => button.style.visibility === "visible" && resolve());
  });
}
