// jsPsych 8 plugin: one trial of the occlusion task of Zimmermann et al. (NeurIPS 2021).
//
// Left: the unit's 9 "favourite images" (reference explanations) in a 3x3 grid; absent in condition `none`.
// Right: the unoccluded query image, below it the two occluded versions side by side, the question, and six
// confidence buttons "3 2 1 | 1 2 3": the left three pick the left image (confidence 3, 2, 1 from the outside in),
// the right three pick the right image (1, 2, 3 from the inside out). Keys 1-6 press the buttons in screen order.
//
// The trial ends only after `on_answer` (the experiment's save-to-server step) has resolved, so the next trial
// can never be shown before the answer is stored. Whatever `on_answer` resolves to is merged into the data.
import { ParameterType } from "jspsych";

import { answerTrial } from "./trial-answer.js";

// Button order on screen: [choice, confidence]; choice 0 = left option, 1 = right option.
export const BUTTONS = [
  [0, 3],
  [0, 2],
  [0, 1],
  [1, 1],
  [1, 2],
  [1, 3],
];
/** The keyboard keys of the buttons, in the same order. */
export const KEYS = ["1", "2", "3", "4", "5", "6"];

const info = {
  name: "occlusion-trial",
  version: "1.0.0",
  parameters: {
    /** The reference images (up to 9, shown 3x3); an empty array hides the reference panel. */
    references: { type: ParameterType.IMAGE, array: true, default: [] },
    /** The unoccluded query image. */
    query: { type: ParameterType.IMAGE, default: undefined },
    /** The two occluded versions of the query, [left, right]. */
    options: { type: ParameterType.IMAGE, array: true, default: undefined },
    /** The trial's index within its phase (practice round or main+catch list), kept in the data. */
    index: { type: ParameterType.INT, default: 0 },
    /** The question above the confidence buttons. */
    question: { type: ParameterType.HTML_STRING, default: "Which image elicits higher activation?" },
    /** A short progress note shown at the top right, e.g. "Trial 3 of 20". */
    progress: { type: ParameterType.HTML_STRING, default: "" },
    /** Heading above the reference grid. */
    references_label: { type: ParameterType.HTML_STRING, default: "Images that strongly activate this unit" },
    /** async (answer) => object: awaited before the trial ends (saving); its result is merged into the data. */
    on_answer: { type: ParameterType.FUNCTION, default: null },
    /** Milliseconds after the stored answer until a Continue button ends the trial (null: the answer ends it). */
    continue_ms: { type: ParameterType.INT, default: null },
  },
  data: {
    /** The trial's index within its phase (jsPsych itself owns `trial_index`: the position in the timeline). */
    index: { type: ParameterType.INT },
    /** 0 = left option, 1 = right option. */
    choice: { type: ParameterType.INT },
    /** 1 (unsure) to 3 (sure). */
    confidence: { type: ParameterType.INT },
    /** Milliseconds from the moment all images were displayed to the click or key press. */
    rt: { type: ParameterType.FLOAT },
  },
};

const img = (src, cls, alt) => `<img class="${cls}" src="${encodeURI(src)}" alt="${alt}" draggable="false">`;

function trialHtml(trial) {
  const refs = trial.references ?? [];
  const panel = refs.length
    ? `<section class="vp-references" aria-label="reference images">
         <h2>${trial.references_label}</h2>
         <div class="vp-ref-grid">${refs.map((src, i) => img(src, "vp-ref", `reference ${i + 1}`)).join("")}</div>
       </section>`
    : "";
  const buttons = BUTTONS.map(
    ([choice, confidence], i) =>
      `<button type="button" class="jspsych-btn vp-conf vp-side-${choice}${i === trial.chosen ? " vp-chosen" : ""}"
         data-button="${i}"
         data-choice="${choice}" data-confidence="${confidence}" aria-keyshortcuts="${KEYS[i]}"
         title="key ${KEYS[i]}" disabled>${confidence}</button>` +
      (i === 2 ? '<span class="vp-divider" aria-hidden="true"></span>' : ""),
  ).join("");
  return `
    <div class="vp-trial ${refs.length ? "" : "vp-no-refs"}" data-index="${trial.index}">
      ${panel}
      <section class="vp-task" aria-label="task">
        <div class="vp-progress">${trial.progress}</div>
        <figure class="vp-query-box">${img(trial.query, "vp-query", "query image")}
          <figcaption>Query image</figcaption></figure>
        <div class="vp-options">
          <figure>${img(trial.options[0], "vp-option vp-option-left", "left occluded image")}
            <figcaption>Left</figcaption></figure>
          <figure>${img(trial.options[1], "vp-option vp-option-right", "right occluded image")}
            <figcaption>Right</figcaption></figure>
        </div>
        <p class="vp-question">${trial.question}</p>
        <div class="vp-buttons" role="group" aria-label="answer with confidence">${buttons}</div>
        <div class="vp-scale"><span>← left: sure … unsure</span><span>right: unsure … sure →</span></div>
        <div class="vp-keys">or keys <kbd>1</kbd> <kbd>2</kbd> <kbd>3</kbd> | <kbd>4</kbd> <kbd>5</kbd> <kbd>6</kbd></div>
      </section>
    </div>`;
}

/** A trial drawn for the instruction pages: not answerable, the part named by `focus` outlined (see app.css);
 * focus "chosen" marks the sure answer for the example's more activating option. */
export function illustrationHtml(example, focus) {
  const defaults = Object.fromEntries(Object.entries(info.parameters).map(([k, p]) => [k, p.default]));
  const chosen = focus === "chosen" ? BUTTONS.findIndex(([c, conf]) => c === example.correct && conf === 3) : -1;
  const html = trialHtml({ ...defaults, ...example, index: "example", progress: "", chosen });
  return `<div class="vp-illustration vp-focus-${focus}" aria-hidden="true">${html}</div>`;
}

class OcclusionTrialPlugin {
  static info = info;

  constructor(jsPsych) {
    this.jsPsych = jsPsych;
  }

  async trial(display_element, trial) {
    return answerTrial(display_element, trial, trialHtml(trial), KEYS);
  }
}

export default OcclusionTrialPlugin;
