// eventcore dashboard: one EventSource, inline SVG charts, no dependencies.
// Every URL is relative, so the page works under any prefix and behind a proxy.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HISTORY = 900;        // samples kept in the page (15 min at 1 s; less while new)
const SPARK = 120;          // samples in a row's sparkline
const LETTERS = 15;         // dead letters listed (the newest)
let settings = { csrf: "", actions: false, payloads: false, interval: 1 };
let history = [];
let letters = [];

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (digits === undefined) digits = value >= 100 ? 0 : 1;
  return value.toFixed(digits);
}

// A line chart of several series: [{values, cls}], scaled to max(values, floor).
// A labelled chart keeps a left margin for its scale (the top value and 0), so that
// no label covers a line; sparklines scale each series on its own.
const AXIS = 56;
function chart(width, height, series, floor, labelled) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  const left = labelled ? AXIS : 1;
  let top = floor || 1;
  for (const s of series) for (const v of s.values) if (v !== null && v > top) top = v;
  if (labelled) {
    for (const y of [1.5, height - 1.5]) {
      root.appendChild(svg("line", { x1: left, x2: width - 1, y1: y, y2: y, class: "grid" }));
    }
    const high = svg("text", { x: left - 6, y: 10, class: "scale right" });
    high.textContent = `${fmt(top)}/s`;
    const low = svg("text", { x: left - 6, y: height - 2, class: "scale right" });
    low.textContent = "0";
    root.append(high, low);
  }
  for (const s of series) {
    let own = top;
    if (!labelled) {
      own = s.floor || floor || 1;
      for (const v of s.values) if (v !== null && v > own) own = v;
    }
    const n = s.values.length;
    if (n < 2) continue;
    const points = s.values.map((v, i) => {
      const x = left + (i / (n - 1)) * (width - 1 - left);
      const y = height - 1.5 - ((v || 0) / own) * (height - 3);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    root.appendChild(svg("polyline", { points: points.join(" "), class: s.cls, fill: "none" }));
  }
  return root;
}

// "58 s", "3 min": how much time the samples cover (what a chart actually holds).
function span(samples) {
  if (samples.length < 2) return null;
  const seconds = samples[samples.length - 1].t - samples[0].t;
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

function totals(sample) {
  const out = { accepted: 0, handled: 0, dropped: 0, failed: 0 };
  for (const row of Object.values(sample.types)) {
    for (const k of Object.keys(out)) out[k] += row[k + "_rate"] || 0;
  }
  return out;
}

function renderTotals() {
  const box = document.getElementById("total-chart");
  const sums = history.map(totals);
  const series = ["accepted", "handled", "dropped", "failed"].map((k) => ({
    cls: "line " + k, values: sums.map((s) => s[k]),
  }));
  const legend = el("div", { class: "legend" });
  const last = sums.length ? sums[sums.length - 1] : totals({ types: {} });
  for (const k of ["accepted", "handled", "dropped", "failed"]) {
    legend.appendChild(el("span", { class: "key " + k }, `${k} ${fmt(last[k])}/s`));
  }
  const width = Math.max(300, box.clientWidth || 900);
  box.replaceChildren(chart(width, 120, series, 1, true), legend);
  const covered = span(history);
  document.getElementById("span").textContent =
    covered ? `(events/s, the last ${covered})` : "(events/s)";
}

async function act(action, target) {
  const response = await fetch("action", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": settings.csrf },
    body: JSON.stringify({ action, target }),
  });
  if (!response.ok) {
    const text = await response.text();
    document.getElementById("status").textContent = `action refused: ${text}`;
  }
}

function renderTypes() {
  const body = document.querySelector("#types tbody");
  const sample = history[history.length - 1];
  if (!sample) return;
  const recent = history.slice(-SPARK);
  const covered = span(recent);
  const legend = document.getElementById("spark-legend");
  legend.replaceChildren(
    el("span", {}, `history${covered ? ", the last " + covered : ""}:`),
    el("span", { class: "key depth" }, "depth (0 to capacity)"),
    el("span", { class: "key handled" }, "handled/s (0 to its peak)"),
  );
  const names = Object.keys(sample.types).sort();
  const rows = [];
  for (const id of names) {
    const row = sample.types[id];
    const tr = el("tr", { "data-type": id, "data-paused": row.paused ? "yes" : "no" });
    tr.appendChild(el("td", { class: "name", title: id }, row.name + (row.paused ? " ⏸" : "")));
    const depth = el("td", { class: "depth" });
    const bar = el("div", { class: "bar" });
    const fill = el("div", { class: "fill" + (row.depth >= row.capacity ? " full" : "") });
    fill.style.width = `${Math.min(100, (100 * row.depth) / Math.max(1, row.capacity))}%`;
    bar.appendChild(fill);
    depth.append(el("span", { class: "depth-value" }, row.depth), ` / ${row.capacity}`, bar);
    tr.appendChild(depth);
    const spark = el("td", { class: "spark" });
    spark.appendChild(chart(160, 32, [
      { cls: "line depth", floor: row.capacity,
        values: recent.map((s) => (s.types[id] ? s.types[id].depth : null)) },
      { cls: "line handled", values: recent.map((s) => (s.types[id] ? s.types[id].handled_rate : null)) },
    ], 1, false));
    tr.appendChild(spark);
    for (const k of ["accepted", "handled", "dropped", "failed"]) {
      tr.appendChild(el("td", { class: "num " + k + "-rate" }, fmt(row[k + "_rate"])));
    }
    tr.appendChild(el("td", { class: "num in-flight" }, `${row.in_flight} / ${row.limit}`));
    tr.appendChild(el("td", { class: "num latency" }, `${fmt(row.p50, 2)} / ${fmt(row.p95, 2)} / ${fmt(row.p99, 2)}`));
    tr.appendChild(el("td", { class: "num handled" }, row.handled));
    const broker = row.broker ? `${fmt(row.broker.pending, 0)} / ${row.broker.redelivered}` : "–";
    tr.appendChild(el("td", { class: "num broker" }, broker));
    const actions = el("td", { class: "actions" });
    if (settings.actions) {
      const button = el("button", { class: row.paused ? "resume" : "pause", type: "button" },
        row.paused ? "resume" : "pause");
      button.addEventListener("click", () => act(row.paused ? "resume" : "pause", id));
      actions.appendChild(button);
    }
    tr.appendChild(actions);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

// Figures of the services the app passed (Dashboard(services=...)): an outbox
// relay's backlog, an inbox's duplicates. The section shows only when there are some.
function renderServices() {
  const sample = history[history.length - 1];
  const services = (sample && sample.services) || {};
  const names = Object.keys(services).sort();
  document.getElementById("services").hidden = names.length === 0;
  const rows = names.map((name) => {
    const tr = el("tr", { "data-service": name });
    tr.appendChild(el("td", { class: "name" }, name));
    const figures = el("td", { class: "figures" });
    for (const [key, value] of Object.entries(services[name])) {
      figures.appendChild(el("span", { class: "figure", "data-figure": key },
        `${key.replace(/_/g, " ")} ${Number.isInteger(value) ? value : fmt(value, 2)}`));
    }
    tr.appendChild(figures);
    return tr;
  });
  document.querySelector("#service-figures tbody").replaceChildren(...rows);
}

const FAILURES = ["handler_failed", "delivery_limit", "undecodable"];
let letterGroups = [];
let chosen = null;  // the group the list is filtered to: {type, reason}, or null

function letterRow(letter) {
  const tr = el("tr", { "data-letter": letter.id });
  tr.appendChild(el("td", {}, letter.id));
  tr.appendChild(el("td", {}, new Date(letter.at * 1000).toLocaleTimeString()));
  tr.appendChild(el("td", {}, letter.type));
  tr.appendChild(el("td", {}, letter.reason));
  tr.appendChild(el("td", {}, letter.error ? `${letter.error}${letter.message ? ": " + letter.message : ""}` : "–"));
  tr.appendChild(el("td", { class: "payload" }, letter.payload === null ? "(redacted)" : letter.payload));
  const actions = el("td", { class: "actions" });
  if (settings.actions) {
    for (const action of ["replay", "discard"]) {
      const button = el("button", { class: action, type: "button" }, action);
      button.addEventListener("click", () => act(action, String(letter.id)));
      actions.appendChild(button);
    }
  }
  tr.appendChild(actions);
  return tr;
}

function isChosen(group) {
  return chosen !== null && chosen.type === group.type && chosen.reason === group.reason;
}

function renderLetterGroups() {
  const total = letterGroups.reduce((sum, group) => sum + group.count, 0);
  document.getElementById("letter-count").textContent = String(total);
  const rows = letterGroups.map((group) => {
    const tr = el("tr", { "data-group": `${group.type}|${group.reason}`,
      class: isChosen(group) ? "chosen" : "" });
    const failure = FAILURES.includes(group.reason);
    tr.appendChild(el("td", { class: "reason" + (failure ? " failure" : "") }, group.reason));
    tr.appendChild(el("td", { class: "type" }, group.type));
    tr.appendChild(el("td", { class: "num group-count" }, group.count));
    const latest = group.latest;
    tr.appendChild(el("td", {}, latest ? new Date(latest.at * 1000).toLocaleTimeString() : "–"));
    tr.appendChild(el("td", {}, latest && latest.error ? latest.error : "–"));
    const pick = el("td", { class: "actions" });
    const button = el("button", { class: "filter", type: "button" }, isChosen(group) ? "show all" : "show");
    button.addEventListener("click", () => {
      chosen = isChosen(group) ? null : { type: group.type, reason: group.reason };
      renderLetters();
    });
    pick.appendChild(button);
    tr.appendChild(pick);
    return tr;
  });
  document.querySelector("#letter-groups tbody").replaceChildren(...rows);
}

function renderLetters() {
  renderLetterGroups();
  let shown = letters;
  let what = `the ${Math.min(LETTERS, letters.length)} newest of the ${letters.length} kept`;
  if (chosen !== null) {
    shown = letters.filter((l) => l.type === chosen.type && l.reason === chosen.reason);
    const group = letterGroups.find(isChosen);
    if (!shown.length && group && group.latest) shown = [group.latest];  // flooded out
    what = `${chosen.reason} ${chosen.type}: the newest ${Math.min(LETTERS, shown.length)} kept`;
  }
  document.getElementById("letter-filter").textContent =
    letters.length || chosen ? `Listed: ${what}.` : "";
  document.querySelector("#letters tbody").replaceChildren(...shown.slice(0, LETTERS).map(letterRow));
}

function render() {
  const sample = history[history.length - 1];
  if (sample) {
    document.getElementById("clock").textContent = new Date(sample.t * 1000).toLocaleTimeString();
  }
  renderTotals();
  renderTypes();
  renderServices();
}

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.className = "status " + state;
  status.textContent = text;
}

function connect() {
  const source = new EventSource("events");
  source.addEventListener("hello", (message) => {
    const hello = JSON.parse(message.data);
    settings = hello;
    // a reconnect's hello carries only the samples after the last one we got
    const seen = history.length ? history[history.length - 1].t : 0;
    history = history.concat(hello.history.filter((s) => s.t > seen)).slice(-HISTORY);
    letters = hello.letters;
    letterGroups = hello.letter_groups || [];
    document.getElementById("mode").textContent =
      (hello.actions ? "actions allowed" : "read-only") + (hello.payloads ? ", payloads shown" : "");
    setStatus("live", "live");
    render();
    renderLetters();
  });
  source.addEventListener("sample", (message) => {
    const data = JSON.parse(message.data);
    history.push(data.sample);
    if (history.length > HISTORY) history.shift();
    if (data.letters) {
      letters = data.letters;
      letterGroups = data.letter_groups || letterGroups;
      renderLetters();
    }
    setStatus("live", "live");
    render();
  });
  source.addEventListener("error", () => setStatus("reconnecting", "reconnecting…"));
}

connect();
