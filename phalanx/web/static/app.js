// The dashboard's only script: local times, confirmations, pictures, live run status.
"use strict";

function localTimes() {
  for (const cell of document.querySelectorAll("td.time[data-ts]")) {
    const ts = parseFloat(cell.dataset.ts);
    if (!isNaN(ts)) cell.textContent = new Date(ts * 1000).toLocaleString();
  }
}

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

async function pictures() {
  for (const box of document.querySelectorAll("[data-src]")) {
    try {
      const response = await fetch(box.dataset.src, { credentials: "same-origin" });
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      box.innerHTML = await response.text();
      box.dataset.loaded = "yes";
    } catch (error) {
      box.textContent = "could not draw this picture: " + error.message;
    }
  }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text || "";
  if (cls) td.className = cls;
  return td;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function liveRuns() {
  const table = document.getElementById("runs");
  if (!table || !window.EventSource) return;
  const filter = table.dataset.filter;
  const state = document.getElementById("live-state");
  const source = new EventSource("/live/runs");
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("run", (message) => {
    const run = JSON.parse(message.data);
    let row = document.getElementById("run-" + run.run_id);
    if (!row) {
      if (run.started_at === undefined) return;  // started before this page: not listed here
      row = document.createElement("tr");
      row.id = "run-" + run.run_id;
      row.dataset.run = run.run_id;
      const first = cell("");
      first.appendChild(link("/runs/" + run.run_id, run.run_id));
      const parent = cell("");
      if (run.parent_run_id) parent.appendChild(link("/runs/" + run.parent_run_id, run.parent_run_id));
      const started = cell(new Date(run.started_at * 1000).toLocaleString(), "time");
      row.append(first, cell(run.status, "status"), cell(run.workflow), parent, started);
      table.tBodies[0].prepend(row);
      const empty = document.getElementById("empty");
      if (empty) empty.remove();
    }
    const status = row.querySelector("td.status");
    if (TERMINAL.has(status.textContent) && status.textContent !== run.status) return;
    status.textContent = run.status;
    status.className = "status status-" + run.status;
    row.dataset.seenAt = String(Date.now());  // when this page showed it (latency tests)
    row.hidden = Boolean(filter) && filter !== run.status;
  });
}

localTimes();
confirmations();
pictures();
liveRuns();
