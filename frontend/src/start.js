// The MTurk HIT's page, shown inside MTurk's frame. As the authors' start page (mturk/cf/start.js of
// brendel-group/causal-understanding-via-visualizations) it opens the study in a window of its own, so that
// fullscreen and the window-size check apply to a real window and the study's storage is not a third party's.
// It then asks the server, every few seconds, whether this assignment's session is finished, and submits the
// assignment to MTurk with the completion code (the server answers only to the worker id and assignment id).
import { api, platformIds } from "./api.js";
import { DEFAULT_TEXTS, escapeHtml, mturkForm, mturkSubmitUrl, showMessage } from "./pages.js";
import "./app.css";

const POLL_MS = 3000;
const MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The study's own page, for the same MTurk parameters; `vp_window` tells it that this page submits. */
function studyUrl(search) {
  const params = new URLSearchParams(search);
  params.set("vp_window", "1");
  return `/?${params}`;
}

function openStudy(search, texts) {
  const opened = window.open(studyUrl(search), "vizprobe-study");
  document.getElementById("vp-popup-note").innerHTML = opened ? "" : texts.popup_blocked;
  opened?.focus();
}

/** Submit the assignment as MTurk's ExternalQuestion expects (a form POST from this frame). */
function submitAssignment(search, code, texts) {
  const url = mturkSubmitUrl(search);
  const assignmentId = new URLSearchParams(search).get("assignmentId");
  showMessage(`${texts.submitting}${url ? mturkForm(url, assignmentId, code) : ""}
    <p class="vp-code" id="vp-completion-code">${escapeHtml(code)}</p>`);
  document.querySelector(".vp-mturk-submit")?.submit();
}

async function main() {
  const search = window.location.search;
  const ids = platformIds(search);
  if (!ids.assignmentId || ids.assignmentId === MTURK_PREVIEW) {
    window.location.replace(`/${search}`); // a preview (or no HIT): the study page shows the preview
    return;
  }
  const config = await api.config();
  const texts = { ...DEFAULT_TEXTS, ...(config.texts ?? {}) };
  showMessage(`${texts.start}<p><button id="vp-open" type="button">${escapeHtml(texts.start_button)}</button></p>
    <div id="vp-popup-note" role="status"></div>`);
  document.getElementById("vp-open").onclick = () => openStudy(search, texts);
  for (;;) {
    const found = await api.submission(ids).catch(() => null);
    if (found?.status === "finished") return submitAssignment(search, found.completion_code, texts);
    if (found?.status === "closed") return showMessage(texts.expired);
    await sleep(POLL_MS);
  }
}

main();
