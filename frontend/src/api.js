// The client side of docs/experiment-api.md.
//
// Every write of the API is idempotent on the server (session + phase + attempt + trial index), so a request
// whose answer never arrived can safely be sent again: network failures and 5xx are retried with exponential
// back-off until a definite answer comes. 4xx are final and thrown as ApiError (the caller decides what to show).
import { savingNote } from "./pages.js";

/** A definite refusal by the server: HTTP status, the API's error code and its one-line message. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error ?? "http_error";
    this.body = body ?? {};
  }
}

// 5xx answers that are decisions of the API rather than outages: retrying them would only wait forever.
const FINAL_5XX = new Set(["no_tasks", "frontend_missing"]);
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
// Show "saving…" only when a request takes noticeable time, so quick saves do not make the page flicker.
const NOTE_AFTER_MS = 400;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function once(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const data = await response.json().catch(() => null);
  return { status: response.status, data };
}

/** Send one request; resolves with the JSON body of a 2xx, throws ApiError on a final refusal. */
export async function request(method, path, body) {
  const note = setTimeout(() => savingNote(true), NOTE_AFTER_MS);
  let delay = FIRST_DELAY_MS;
  try {
    for (;;) {
      let result = null;
      try {
        result = await once(method, path, body);
      } catch {
        // fetch itself failed (offline, server restarting): fall through to the retry below
      }
      if (result) {
        const { status, data } = result;
        if (status >= 200 && status < 300 && data !== null) return data;
        if (status >= 400 && status < 500) throw new ApiError(status, data);
        if (status >= 500 && FINAL_5XX.has(data?.error)) throw new ApiError(status, data);
      }
      savingNote(true, "saving… (connection problem, retrying)");
      await sleep(delay * (0.75 + Math.random() / 2)); // jitter: many participants must not retry in lockstep
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  } finally {
    clearTimeout(note);
    savingNote(false);
  }
}

const PLATFORM_KEYS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId"];

/** The platform's URL parameters (Prolific, MTurk); empty ones are left out. */
export function platformIds(search) {
  const params = new URLSearchParams(search);
  return Object.fromEntries(PLATFORM_KEYS.filter((k) => params.get(k)).map((k) => [k, params.get(k)]));
}

export const api = {
  config: () => request("GET", "/api/config"),
  preview: () => request("GET", "/api/preview"),
  start: (ids, resume) => request("POST", "/api/sessions", { platform_ids: ids, resume }),
  submission: (ids) => request("POST", "/api/submission", { platform_ids: ids }),
  event: (sid, event, extra = {}) => request("POST", `/api/sessions/${encodeURIComponent(sid)}/events`, { event, ...extra }),
  respond: (sid, answer) => request("POST", `/api/sessions/${encodeURIComponent(sid)}/responses`, answer),
  withdraw: (sid) => request("POST", `/api/sessions/${encodeURIComponent(sid)}/return`, {}),
  complete: (sid, body) => request("POST", `/api/sessions/${encodeURIComponent(sid)}/complete`, body),
};
