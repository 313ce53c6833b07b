// The participant's page: consent -> welcome -> instructions -> fullscreen -> practice (repeated until perfect, at
// most K rounds) -> main and catch trials -> debrief -> completion code (or the platform's redirect). The
// instruction time is measured as the authors measured theirs: from the welcome page to the first trial.
//
// The server is the source of truth (docs/experiment-api.md): the page asks it for the session's state, skips
// whatever the state says is done, and shows a trial only after the previous answer is stored. The session id
// is kept in localStorage, so a reload resumes at the first unanswered trial instead of starting over.
import { initJsPsych } from "jspsych";
import CallFunction from "@jspsych/plugin-call-function";
import Fullscreen from "@jspsych/plugin-fullscreen";
import HtmlButtonResponse from "@jspsych/plugin-html-button-response";
import Instructions from "@jspsych/plugin-instructions";
import Preload from "@jspsych/plugin-preload";
import SurveyHtmlForm from "@jspsych/plugin-survey-html-form";

import { api, ApiError, platformIds } from "./api.js";
import { feedbackHtml, instructionPages } from "./instructions.js";
import { completionHtml, DEFAULT_TEXTS, escapeHtml, mturkSubmitUrl, previewHtml, showMessage } from "./pages.js";
import ExemplarTrial from "./plugin-exemplar-trial.js";
import OcclusionTrial from "./plugin-occlusion-trial.js";
import "./app.css";

const STORAGE_KEY = "vizprobe.session";
const REDIRECT_DELAY_MS = 3000;
const MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE";
// The authors' smallest window (jsPsych's `exclusions`, mturk/cf/task.js): below it the page asks for a larger one.
export const MIN_WINDOW = { width: 940, height: 600 };

// localStorage may be unavailable (private mode, blocked storage): then a reload simply starts a new session.
const stored = {
  get() {
    try {
      return JSON.parse(localStorage.getItem(STORAGE_KEY)) ?? null;
    } catch {
      return null;
    }
  },
  set(value) {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(value));
    } catch {
      /* see above */
    }
  },
  clear() {
    try {
      localStorage.removeItem(STORAGE_KEY);
    } catch {
      /* see above */
    }
  },
};

/** Resume the stored session if any; a timed-out one is forgotten and a new session is asked for once. */
async function startSession(ids) {
  const saved = stored.get();
  try {
    return await api.start(ids, saved?.session_id ?? null);
  } catch (err) {
    if (err instanceof ApiError && err.code === "session_expired" && saved) {
      stored.clear();
      return api.start(ids, null); // a returning worker id is then turned away by the server
    }
    throw err;
  }
}

/** A page for a refusal or an error the timeline cannot recover from; returns a promise that never settles. */
function stop(err, texts) {
  const refusals = {
    already_participated: texts.already_participated,
    no_tasks: texts.no_tasks,
    session_expired: texts.expired,
    missing_worker_id: texts.missing_worker_id,
    session_elsewhere: texts.session_elsewhere,
    session_returned: texts.returned,
  };
  let html = refusals[err?.code];
  if (!html) {
    if (err?.code === "unknown_session") stored.clear();
    const detail = err instanceof ApiError ? err.message : String(err);
    html = `<h1>Something went wrong</h1><p>${escapeHtml(detail)}</p>
      <p>Please reload this page; your answers so far are saved.</p>`;
  }
  showMessage(html);
  return new Promise(() => {});
}

function showEnd(code, redirectUrl, texts) {
  document.getElementById("vp-stop").hidden = true;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => undefined);
  const params = new URLSearchParams(window.location.search);
  const submitUrl = mturkSubmitUrl(window.location.search);
  // Opened by the HIT's start page (start.js): that page submits the assignment; the form here is the fallback.
  const ownWindow = params.has("vp_window") ? texts.in_own_window : "";
  const mturk = submitUrl ? { url: submitUrl, assignmentId: params.get("assignmentId"), ownWindow } : null;
  showMessage(completionHtml(code, redirectUrl, mturk));
  if (redirectUrl) setTimeout(() => window.location.assign(redirectUrl), REDIRECT_DELAY_MS);
}

/** The "Stop the study" button: after a confirmation the session is returned (its task freed at once). */
function offerStop(sid, texts, jsPsych) {
  const button = document.getElementById("vp-stop");
  button.hidden = false;
  button.onclick = async () => {
    if (!window.confirm(texts.stop_confirm)) return;
    button.hidden = true;
    window.vizprobe.returned = true;
    try {
      await api.withdraw(sid);
    } catch (err) {
      window.vizprobe.returned = false;
      return err?.code === "already_completed" ? undefined : stop(err, texts); // finished meanwhile: the end shows
    }
    stored.clear();
    jsPsych.abortExperiment();
    showMessage(texts.returned);
  };
}

/** Every image a still-to-do part of the session shows, for the preload step. */
function imagesToLoad(state, withPractice, withExample) {
  const trials = [
    ...(withExample && state.example ? [state.example] : []),
    ...(withPractice ? state.practice_rounds.flat() : []),
    ...state.trials.slice(state.next_trial_index),
  ];
  return [...new Set(trials.flatMap((t) => [...t.references, ...(t.min_references ?? []), t.query, ...t.options]))]
    .filter((src) => src);
}

/** The authors' fullscreen prompt (after the instructions); a browser that refuses fullscreen goes on anyway. */
function fullscreenStep(texts) {
  return { type: Fullscreen, message: texts.fullscreen, button_label: texts.fullscreen_button, fullscreen_mode: true };
}

/** After a reload (which leaves fullscreen) the next button press goes back to it, as the prompt did. */
function backToFullscreen() {
  if (!document.fullscreenElement) document.documentElement.requestFullscreen?.().catch(() => undefined);
}

/** Below MIN_WINDOW a message covers the page (and keys are held back) until the window is enlarged. */
function guardWindowSize(texts) {
  const cover = document.createElement("div");
  cover.id = "vp-too-small";
  cover.setAttribute("role", "alertdialog");
  document.body.append(cover);
  const check = () => {
    const small = window.innerWidth < MIN_WINDOW.width || window.innerHeight < MIN_WINDOW.height;
    cover.hidden = !small;
    if (small) {
      cover.innerHTML = texts.too_small
        .replace("MIN_SIZE", `${MIN_WINDOW.width} x ${MIN_WINDOW.height}`)
        .replace("CURRENT_SIZE", `${window.innerWidth} x ${window.innerHeight}`);
    }
  };
  window.addEventListener("resize", check);
  window.addEventListener(
    "keydown",
    (event) => {
      if (!cover.hidden) event.stopImmediatePropagation();
    },
    true,
  );
  check();
}

function buildTimeline(jsPsych, config, state, texts, clock) {
  const sid = state.session_id;
  const attemptsAllowed = config.practice_attempts;
  // A timeline step that waits for a server call; a final refusal replaces the page.
  const serverStep = (call) => ({
    type: CallFunction,
    async: true,
    func: (done) => call().then(done, (err) => stop(err, texts)),
  });
  // One trial of the package's task whose answer is stored before the trial ends (see the plugins' `on_answer`).
  const exemplar = config.task === "exemplar";
  const occlusionTrial = (trial, phase, attempt, progress) => ({
    type: exemplar ? ExemplarTrial : OcclusionTrial,
    continue_ms: phase === "main" ? (config.continue_ms ?? null) : null, // practice: the feedback page's button
    references: trial.references,
    ...(exemplar ? { min_references: trial.min_references ?? [] } : { query: trial.query }),
    options: trial.options,
    index: trial.index,
    progress,
    data: { phase, trial_id: trial.trial_id, kind: trial.kind },
    on_answer: async (answer) => {
      const a = attempt();
      const { index, choice, confidence, rt, away_count, away_ms } = answer;
      const body = { phase, trial_index: index, attempt: a, choice, confidence, rt_ms: rt, away_count, away_ms };
      const result = await api.respond(sid, body).catch((err) => stop(err, texts));
      return { attempt: a, correct: result.correct ?? null };
    },
  });

  const timeline = [];
  const n = state.practice.length;
  // A reload in the middle of a practice round finishes that round at its first unanswered trial.
  const sofar = state.practice_answers ?? [];
  const unfinished = state.practice_attempts > 0 && sofar.length > 0 && sofar.length < n;
  const doPractice =
    n > 0 && !state.practice_passed && (unfinished || state.practice_attempts < attemptsAllowed);
  timeline.push({
    type: Preload,
    images: imagesToLoad(state, doPractice, !state.instructions_done),
    message: "<p>Loading images…</p>",
    show_progress_bar: true,
    max_load_time: 120000,
    error_message: "<p>Some images could not be loaded. Please check your connection and reload this page.</p>",
  });

  if (!state.consented) {
    const consent = texts.consent.replace("TIME_SENTENCE", texts.time_sentence || "");
    timeline.push({ type: HtmlButtonResponse, stimulus: consent, choices: [texts.consent_button] });
    timeline.push(serverStep(() => api.event(sid, "consent")));
  }

  if (!state.instructions_done) {
    // The authors' instruction time: jsPsych's time_elapsed at the first trial, counted from their welcome page.
    let welcomeAt = performance.now();
    const references = state.trials.some((t) => t.references.length > 0);
    const pages = instructionPages(texts, state.example, {
      references,
      practice: doPractice,
      condition: state.condition,
      task: config.task,
      continueButton: config.continue_ms != null,
    });
    timeline.push({
      type: Instructions,
      pages: [texts.welcome],
      show_clickable_nav: true,
      button_label_next: "Next",
      on_load: () => {
        welcomeAt = performance.now();
        clock.start();
      },
    });
    timeline.push({
      type: Instructions,
      pages,
      show_clickable_nav: true,
      button_label_previous: "Back",
      button_label_next: "Next",
      css_classes: ["vp-instructions"],
    });
    timeline.push(fullscreenStep(texts));
    timeline.push(serverStep(() => api.event(sid, "instructions", { duration_s: (performance.now() - welcomeAt) / 1000 })));
  }

  if (doPractice) {
    // The interrupted round (if any) keeps its attempt number and stored answers; later rounds start afresh.
    const resumedAttempt = unfinished ? state.practice_attempts : null;
    const answeredBefore = new Set(sofar.map((a) => a.trial_index));
    let attempt = unfinished ? state.practice_attempts - 1 : state.practice_attempts;
    let results = [];
    const skip = (trial) => attempt === resumedAttempt && answeredBefore.has(trial.index);
    const round = [
      {
        type: CallFunction,
        func: () => {
          attempt += 1;
          results = attempt === resumedAttempt ? sofar.map((a) => a.correct) : [];
        },
      },
      {
        // The first round follows the instructions directly (their last page announces it), as the authors';
        // after a reload past the instructions it gets its page (whose button also returns to fullscreen).
        conditional_function: () => attempt > 1 || attempt === resumedAttempt || state.instructions_done,
        timeline: [{
        type: HtmlButtonResponse,
        stimulus: () =>
          attempt === resumedAttempt
            ? `<h1>Welcome back</h1><p>Your answers so far are saved. You continue practice round ${attempt}
                 with trial ${sofar.length + 1} of ${n}.</p>`
            : attempt === 1
              ? `<h1>Practice</h1><p>${n} practice trials with feedback.</p>`
              : `<h1>Practice round ${attempt} of at most ${attemptsAllowed}</h1>
                 <p>Not all answers of the last round were right. Let's practise once more.</p>`,
        choices: () => [attempt === resumedAttempt ? "Continue practice" : "Start practice"],
        on_finish: backToFullscreen,
        }],
      },
    ];
    // Each round is drawn anew by the server (state.practice_rounds): the k-th trial of round `attempt`.
    const rounds = state.practice_rounds ?? [state.practice];
    for (let k = 0; k < n; k += 1) {
      const current = () => rounds[Math.max(1, Math.min(attempt, rounds.length)) - 1][k];
      const step = occlusionTrial(current(), "practice", () => attempt, `Practice ${k + 1} of ${n}`);
      round.push({
        conditional_function: () => !skip(current()),
        timeline: [
          {
            ...step,
            references: () => current().references,
            ...(exemplar
              ? { min_references: () => current().min_references ?? [] }
              : { query: () => current().query }),
            options: () => current().options,
            data: { phase: "practice", position: k },
            on_finish: (data) => results.push(data.correct),
          },
          {
            type: HtmlButtonResponse,
            stimulus: () => feedbackHtml(current(), jsPsych.data.getLastTrialData().values()[0], config.task),
            choices: ["Continue"],
          },
        ],
      });
    }
    timeline.push({
      timeline: round,
      loop_function: () => !results.every((c) => c === 1) && attempt < attemptsAllowed,
    });
  }

  const remaining = state.trials.slice(state.next_trial_index);
  const total = state.trials.length;
  // Straight from the instructions (no practice), the main trials start at once, as the authors'.
  const straight = !state.instructions_done && !doPractice && state.next_trial_index === 0;
  if (remaining.length > 0 && !straight) {
    const resumed = state.next_trial_index > 0;
    timeline.push({
      type: HtmlButtonResponse,
      stimulus: resumed
        ? `<h1>Welcome back</h1><p>Your answers so far are saved. You continue with trial
             ${state.next_trial_index + 1} of ${total}.</p>`
        : `<h1>The main part</h1><p>Now come ${total} trials, without feedback.</p>`,
      choices: ["Continue"],
      on_finish: backToFullscreen,
    });
  }
  if (remaining.length > 0) {
    for (const trial of remaining) {
      timeline.push(occlusionTrial(trial, "main", () => 0, `Trial ${trial.index + 1} of ${total}`));
    }
  }

  let comments = "";
  timeline.push({
    type: SurveyHtmlForm,
    html: texts.debrief,
    button_label: "Finish",
    on_finish: (data) => (comments = data.response?.comments ?? ""),
  });
  if (config.continue_ms != null) {
    // The authors' last page before their data were sent; their total time ends with it.
    timeline.push({ type: HtmlButtonResponse, stimulus: texts.submit_page, choices: ["Continue"] });
  }
  timeline.push(
    serverStep(async () => {
      const totalTime = Math.max(0, (Date.now() - (clock.startedAt ?? Date.now())) / 1000);
      const end = await api.complete(sid, { total_time_s: totalTime, debrief: { comments } });
      state.completed = true;
      Object.assign(state, { completion_code: end.completion_code, redirect_url: end.redirect_url });
    }),
  );
  return timeline;
}

/** An MTurk preview: the instructions and an example trial; no session is started and no task is taken. */
async function showPreview(texts, task) {
  const preview = await api.preview();
  showMessage(previewHtml(texts, preview.example, task));
}

async function main() {
  let texts = DEFAULT_TEXTS;
  let config;
  let state;
  try {
    config = await api.config();
    texts = { ...DEFAULT_TEXTS, ...(config.texts ?? {}) };
    const ids = platformIds(window.location.search);
    if (ids.assignmentId === MTURK_PREVIEW) return await showPreview(texts, config.task);
    state = await startSession(ids);
  } catch (err) {
    return stop(err, texts);
  }
  // The session's clock starts at the welcome page, as the authors' total time (jsPsych's time_elapsed) did; it
  // is kept across reloads. A session resumed without it (storage lost) counts from now.
  const saved = stored.get();
  const clock = { startedAt: saved?.session_id === state.session_id ? (saved.started_at ?? null) : null };
  clock.start = () => {
    clock.startedAt ??= Date.now();
    stored.set({ session_id: state.session_id, started_at: clock.startedAt });
  };
  stored.set({ session_id: state.session_id, started_at: clock.startedAt });
  if (state.instructions_done) clock.start();

  // Exposed for the experimenter's console and the browser test (it holds nothing the page has not got anyway).
  window.vizprobe = { config, state };
  if (state.completed) return showEnd(state.completion_code, state.redirect_url, texts);
  guardWindowSize(texts);
  document.getElementById("vp-root").replaceChildren(); // jsPsych adds its own elements; drop "Loading…"
  const jsPsych = initJsPsych({ display_element: "vp-root" });
  window.vizprobe.jsPsych = jsPsych;
  offerStop(state.session_id, texts, jsPsych);
  await jsPsych.run(buildTimeline(jsPsych, config, state, texts, clock));
  if (window.vizprobe.returned) return showMessage(texts.returned);
  showEnd(state.completion_code, state.redirect_url, texts);
}

main();
