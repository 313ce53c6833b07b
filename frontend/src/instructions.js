// The instruction pages, in the number and order of the authors' (mturk/cf/task.js of
// brendel-group/causal-understanding-via-visualizations): 15 pages where the condition shows references, 14 where
// it does not. Pages 3 on are illustrated with the session's own example trial (the package's most obvious practice
// trial with this condition's references), drawn by the trial plugin itself with the part the page speaks of
// outlined, so the picture is always the page the participant is about to see.
//
// A page's text may hold these markers, filled per session:
//   TRIAL(focus)        the example trial; focus: references, query, options, question, buttons, left, right,
//                       chosen (an answer given), all (nothing outlined), after (what follows an answer)
//   REFERENCES_CLAUSE   what the reference images are (blur: the part that activates the unit left sharp)
//   AFTER_ANSWER        what follows an answer (feedback in practice, the next trial otherwise)
//   PRACTICE_SENTENCE   whether practice trials come next
//
// The exemplar task's pages (`instructions_exemplar`, `instructions_exemplar_none`) follow IMI's
// (brendel-group/imi, mturk/2afc/task.js), illustrated the same way with the exemplar plugin's drawing.
import { illustrationHtml as exemplarIllustration } from "./plugin-exemplar-trial.js";
import { illustrationHtml as occlusionIllustration } from "./plugin-occlusion-trial.js";

/** The feedback page after a practice trial: right or wrong, with the correct option outlined. */
export function feedbackHtml(trial, answer, task = "occlusion") {
  const right = answer.correct === 1;
  const exemplar = task === "exemplar";
  const names = exemplar ? ["upper", "lower"] : ["left", "right"];
  const options = trial.options
    .map((src, i) => `<img class="vp-fb-option ${i === trial.correct ? "vp-fb-correct" : ""}" src="${encodeURI(src)}"
      alt="${names[i]} image">`)
    .join("");
  const why = exemplar ? "belongs to the Right Examples" : "activates the unit more strongly";
  return `<div class="vp-feedback ${right ? "vp-right" : "vp-wrong"}">
      <h2>${right ? "Correct!" : "Incorrect."}</h2>
      <p>The ${names[trial.correct]} image (outlined) ${why}.</p>
      <div class="vp-fb-options">${options}</div></div>`;
}

/** The picture a TRIAL(focus) marker stands for; "" without an example (a package without practice trials). */
function picture(example, focus, practice, task) {
  if (!example) return "";
  if (focus === "after" && practice) {
    return `<div class="vp-illustration vp-illustration-feedback" aria-hidden="true">
      ${feedbackHtml(example, { correct: 1 }, task)}<button type="button" class="jspsych-btn" disabled>Continue</button></div>`;
  }
  const draw = task === "exemplar" ? exemplarIllustration : occlusionIllustration;
  return draw(example, focus === "after" ? "chosen" : focus);
}

/**
 * The instruction pages of a session.
 * @param texts the page texts (DEFAULT_TEXTS merged with the server's)
 * @param example the example trial (state.example) or null
 * @param options {references: bool, practice: bool, condition: string}
 */
export function instructionPages(
  texts,
  example,
  { references, practice, condition, task = "occlusion", continueButton = false },
) {
  const exemplar = task === "exemplar";
  const pages = exemplar
    ? (references ? texts.instructions_exemplar : texts.instructions_exemplar_none)
    : (references ? texts.instructions : texts.instructions_none);
  const clause = condition === "blur" ? texts.references_clause_blur : "";
  return pages.map((page) =>
    page
      .replaceAll("REFERENCES_CLAUSE", clause)
      .replaceAll("AFTER_ANSWER", afterAnswer(texts, practice, continueButton))
      .replaceAll("PRACTICE_SENTENCE", practice ? texts.practice_sentence : texts.no_practice_sentence)
      .replace(/TRIAL\((\w+)\)/g, (_, focus) => picture(example, focus, practice, task)),
  );
}

/** What follows an answer: feedback in practice; then the next trial, at once or with the Continue button. */
function afterAnswer(texts, practice, continueButton) {
  if (continueButton) return practice ? texts.after_answer_practice_continue : texts.after_answer_continue;
  return practice ? texts.after_answer_practice : texts.after_answer_none;
}

/** The pages as plain text (markers dropped), for the MTurk preview. */
export function instructionText(texts, task = "occlusion") {
  return (task === "exemplar" ? texts.instructions_exemplar : texts.instructions)
    .map((page) =>
      page
        .replace(/TRIAL\(\w+\)/g, "")
        .replaceAll("REFERENCES_CLAUSE", "")
        .replaceAll("AFTER_ANSWER", texts.after_answer_practice)
        .replaceAll("PRACTICE_SENTENCE", texts.practice_sentence),
    )
    .join("");
}
