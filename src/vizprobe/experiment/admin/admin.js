// The admin page: asks for the admin token once (kept in this tab's sessionStorage), sends it as an
// Authorization header, shows progress per condition and downloads the responses CSV. The token never
// appears in a URL, so it is not kept in the browser history, server logs or Referer headers.
"use strict";

const KEY = "vizprobe.admin-token";
const COLUMNS = ["tasks", "completed", "running", "free", "exhausted", "participants", "assignments", "failed",
  "expired", "returned", "away_trials"];
const $ = (id) => document.getElementById(id);

function token() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return window.vizprobeAdminToken ?? null;
  }
}

function keep(value) {
  try {
    if (value === null) sessionStorage.removeItem(KEY);
    else sessionStorage.setItem(KEY, value);
  } catch {
    window.vizprobeAdminToken = value;
  }
}

async function get(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
  if (response.status === 401) throw Object.assign(new Error("wrong admin token"), { unauthorized: true });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message ?? `HTTP ${response.status}`);
  }
  return response;
}

function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  return element;
}

function render(progress) {
  const table = $("conditions");
  const head = document.createElement("tr");
  for (const name of ["condition", ...COLUMNS]) head.append(cell("th", name));
  table.replaceChildren(head);
  for (const [condition, counts] of Object.entries(progress.conditions).sort()) {
    const row = document.createElement("tr");
    row.append(cell("td", condition), ...COLUMNS.map((c) => cell("td", String(counts[c] ?? 0))));
    table.append(row);
  }
  $("responses").textContent = String(progress.responses);
}

function showLogin(message = "") {
  $("progress").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
}

async function refresh() {
  try {
    render(await (await get("/api/admin/progress")).json());
    $("login").hidden = true;
    $("progress").hidden = false;
    $("progress-error").textContent = "";
  } catch (err) {
    if (err.unauthorized) {
      keep(null);
      showLogin("That token is not this server's admin token.");
    } else {
      $("progress-error").textContent = String(err.message);
    }
  }
}

async function download() {
  try {
    const blob = await (await get("/api/admin/export.csv")).blob();
    const link = Object.assign(document.createElement("a"), {
      href: URL.createObjectURL(blob),
      download: "responses.csv",
    });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  } catch (err) {
    $("progress-error").textContent = String(err.message);
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  keep($("token").value.trim());
  $("token").value = "";
  refresh();
});
$("export").addEventListener("click", download);
$("refresh").addEventListener("click", refresh);
$("logout").addEventListener("click", () => {
  keep(null);
  showLogin();
});

if (token()) refresh();
else showLogin();
