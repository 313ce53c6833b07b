// jsPsych 8 plugin: one trial of the exemplar task (Borowski et al., ICLR 2021; IMI, Zimmermann et al. 2023).
//
// Left: 9 "Left Examples" (images that activate the unit weakly); right: 9 "Right Examples" (images that activate
// it strongly); both absent in condition `none`. In the centre, two query images, one above the other: the upper
// with a row of confidence buttons "1 2 3" below it, the lower with its row above it (IMI's layout); the
// participant picks the query that matches the Right Examples better, with confidence 1 (unsure) to 3 (sure).
// Keys 1-3 answer for the upper image and 4-6 for the lower one, in screen order.
//
// As in the occlusion plugin, the trial ends only after `on_answer` (saving to the server) has resolved.
import { ParameterType } from "jspsych";

import { answerTrial } from "./trial-answer.js";

// Button order on screen: [choice, confidence]; choice 0 = upper query, 1 = lower query.
export const BUTTONS = [
  [0, 1],
  [0, 2],
  [0, 3],
  [1, 1],
  [1, 2],
  [1, 3],
];
export const KEYS = ["1", "2", "3", "4", "5", "6"];

const info = {
  name: "exemplar-trial",
  version: "1.0.0",
  parameters: {
    /** The strongly activating references ("Right Examples", up to 9, 3x3); empty hides both panels. */
    references: { type: ParameterType.IMAGE, array: true, default: [] },
    /** The weakly activating references ("Left Examples"). */
    min_references: { type: ParameterType.IMAGE, array: true, default: [] },
    /** The two query images, [upper, lower]. */
    options: { type: ParameterType.IMAGE, array: true, default: undefined },
    /** The trial's index within its phase, kept in the data. */
    index: { type: ParameterType.INT, default: 0 },
    question: {
      type: ParameterType.HTML_STRING,
      default: "Which image at the center matches the <b>Right Examples</b> better?",
    },
    progress: { type: ParameterType.HTML_STRING, default: "" },
    left_label: { type: ParameterType.HTML_STRING, default: "Left Examples" },
    right_label: { type: ParameterType.HTML_STRING, default: "Right Examples" },
    /** async (answer) => object: awaited before the trial ends (saving); its result is merged into the data. */
    on_answer: { type: ParameterType.FUNCTION, default: null },
    /** Milliseconds after the stored answer until a Continue button ends the trial (null: the answer ends it). */
    continue_ms: { type: ParameterType.INT, default: null },
  },
  data: {
    index: { type: ParameterType.INT },
    /** 0 = upper query, 1 = lower query. */
    choice: { type: ParameterType.INT },
    confidence: { type: ParameterType.INT },
    rt: { type: ParameterType.FLOAT },
  },
};

const img = (src, cls, alt) => `<img class="${cls}" src="${encodeURI(src)}" alt="${alt}" draggable="false">`;

function panel(images, label, cls, name) {
  return `<section class="vp-references vp-ex-panel ${cls}" aria-label="${name}">
      <h2>${label}</h2>
      <div class="vp-ref-grid vp-ex-grid">${images.map((src, i) => img(src, "vp-ref", `${name} ${i + 1}`)).join("")}</div>
    </section>`;
}

function row(choice, chosen) {
  return BUTTONS.map(([c, confidence], i) =>
    c !== choice
      ? ""
      : `<button type="button" class="jspsych-btn vp-conf vp-side-${c}${i === chosen ? " vp-chosen" : ""}"
           data-button="${i}" data-choice="${c}" data-confidence="${confidence}" aria-keyshortcuts="${KEYS[i]}"
           title="key ${KEYS[i]}" disabled>${confidence}</button>`,
  ).join("");
}

function trialHtml(trial) {
  const refs = trial.references ?? [];
  const lows = trial.min_references ?? [];
  const shown = refs.length > 0 && lows.length > 0;
  return `
    <div class="vp-trial vp-exemplar ${shown ? "" : "vp-no-refs"}" data-index="${trial.index}">
      ${shown ? panel(lows, trial.left_label, "vp-ex-left", "left example") : ""}
      <section class="vp-task vp-ex-center" aria-label="task">
        <div class="vp-progress">${trial.progress}</div>
        <p class="vp-question">${trial.question}</p>
        <figure class="vp-ex-query vp-ex-upper">${img(trial.options[0], "vp-option vp-option-left", "upper image")}</figure>
        <div class="vp-buttons vp-ex-row vp-ex-row-upper" role="group" aria-label="the upper image, with confidence">
          ${row(0, trial.chosen)}</div>
        <div class="vp-buttons vp-ex-row vp-ex-row-lower" role="group" aria-label="the lower image, with confidence">
          ${row(1, trial.chosen)}</div>
        <figure class="vp-ex-query vp-ex-lower">${img(trial.options[1], "vp-option vp-option-right", "lower image")}</figure>
        <div class="vp-keys">or keys <kbd>1</kbd> <kbd>2</kbd> <kbd>3</kbd> (upper) | <kbd>4</kbd> <kbd>5</kbd> <kbd>6</kbd> (lower)</div>
      </section>
      ${shown ? panel(refs, trial.right_label, "vp-ex-right", "right example") : ""}
    </div>`;
}

/** A trial drawn for the instruction pages (not answerable), the part named by `focus` outlined; "chosen" marks
 * the sure answer for the query that belongs to the Right Examples. */
export function illustrationHtml(example, focus) {
  const defaults = Object.fromEntries(Object.entries(info.parameters).map(([k, p]) => [k, p.default]));
  const chosen = focus === "chosen" ? BUTTONS.findIndex(([c, conf]) => c === example.correct && conf === 3) : -1;
  const html = trialHtml({ ...defaults, ...example, index: "example", progress: "", chosen });
  return `<div class="vp-illustration vp-focus-${focus}" aria-hidden="true">${html}</div>`;
}

class ExemplarTrialPlugin {
  static info = info;

  constructor(jsPsych) {
    this.jsPsych = jsPsych;
  }

  async trial(display_element, trial) {
    return answerTrial(display_element, trial, trialHtml(trial), KEYS);
  }
}

export default ExemplarTrialPlugin;
