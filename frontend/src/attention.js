// Whether the participant looked away while a trial was shown: the window lost focus (the blur and focus events
// that jsPsych's interaction data records) or the tab was hidden (visibilitychange); counted and timed per trial.
let away = false;
let awaySince = 0;
let events = 0;
let awayMs = 0;

function leave() {
  if (away) return; // a blur followed by the tab being hidden is one time away
  away = true;
  awaySince = performance.now();
  events += 1;
}

function back() {
  if (!away || document.hidden || !document.hasFocus()) return;
  away = false;
  awayMs += performance.now() - awaySince;
}

window.addEventListener("blur", leave);
window.addEventListener("focus", back);
document.addEventListener("visibilitychange", () => (document.hidden ? leave() : back()));

/** The counters now (a time away still going on counts up to now). */
export function attentionMark() {
  return { events, awayMs: awayMs + (away ? performance.now() - awaySince : 0) };
}

/** What happened since `mark`: `away_count` times away, `away_ms` milliseconds away (as the API takes them). */
export function attentionSince(mark) {
  const now = attentionMark();
  return { away_count: now.events - mark.events, away_ms: Math.round((now.awayMs - mark.awayMs) * 10) / 10 };
}
