// petriflow console: the one script. The pages work without it; it only
// keeps a run's picture live, from the server-sent events of /marking.
"use strict";

const TRANSITION_STATES = ["enabled", "executing", "completed", "failed"];
const RETRY_MS = 5000;

function applyMarking(figure, event) {
  const data = JSON.parse(event.data);
  for (const place of figure.querySelectorAll("g.place")) {
    const count = data.tokens[place.dataset.place] || 0;
    place.classList.toggle("marked", count > 0);
    const label = place.querySelector("text.tokens");
    if (label) label.textContent = count > 0 ? String(count) : "";
  }
  for (const transition of figure.querySelectorAll("g.transition")) {
    const state = data.transitions[transition.dataset.transition];
    for (const name of TRANSITION_STATES) transition.classList.toggle(name, name === state);
  }
  const runState = document.getElementById("run-state");
  if (runState && runState.dataset.state !== data.run_state) {
    runState.dataset.state = data.run_state;
    runState.innerHTML = "";
    const badge = document.createElement("span");
    badge.className = "state state-" + data.run_state;
    badge.textContent = data.run_state;
    runState.appendChild(badge);
  }
  let stale = false;
  const rows = document.querySelectorAll("#steps tr[data-step]");
  const shown = new Set();
  for (const row of rows) {
    shown.add(row.dataset.step);
    const state = data.steps[row.dataset.step];
    const cell = row.querySelector(".step-state .state");
    if (state && cell && cell.textContent !== state) stale = true;
  }
  for (const step of Object.keys(data.steps)) if (!shown.has(step)) stale = true;
  const note = document.getElementById("stale");
  if (note) note.hidden = !stale;
  figure.dataset.runState = data.run_state;
}

function follow(figure) {
  const source = new EventSource(figure.dataset.events);
  const live = document.getElementById("live");
  source.addEventListener("marking", (event) => applyMarking(figure, event));
  source.addEventListener("end", () => {
    source.close();
    if (live) live.textContent = "finished";
    figure.dataset.live = "no";
  });
  source.onerror = () => {
    if (figure.dataset.live !== "yes") return;
    if (live) live.textContent = "reconnecting…";
    // A refused stream (503 while too many live pages are open, or the Engine
    // restarting) closes for good: EventSource retries only a dropped one.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => follow(figure), RETRY_MS);
  };
  source.onopen = () => { if (live) live.textContent = "live"; };
}

document.addEventListener("DOMContentLoaded", () => {
  const figure = document.getElementById("marking");
  if (figure && figure.dataset.live === "yes") follow(figure);
});
