// tidings fault lab page: start a scenario, watch its messages move through their confirmation
// points against the faults, then read the checker's verdict. Talks to /api/lab/* and
// /lab/events only; everything it shows comes from the run's own record.

import { $, el, post } from "./common.js";

const LANES = {
  composed: { label: "composed", colour: "#8a93a6", meaning: "durable in the sender's outbox" },
  sent: { label: "✓ stored", colour: "#15803d", meaning: "committed by the relay" },
  delivered: { label: "✓✓ delivered", colour: "#2563eb", meaning: "committed by that device" },
  read: { label: "read", colour: "#7c3aed", meaning: "displayed at that device" },
  received: { label: "received", colour: "#0e7490", meaning: "surfaced at the recipient" },
  expired: { label: "✗ expired", colour: "#b91c1c", meaning: "retention passed first" },
  refused: { label: "refused", colour: "#7f1d1d", meaning: "the relay said no (with a reason)" },
};
const COUNTERS = [
  ["composed", "composed"], ["sent", "✓ stored"], ["delivered", "✓✓ delivered"], ["read", "read"],
  ["received", "received"], ["expired", "✗ expired"], ["refused", "refused"], ["lost", "lost"],
  ["duplicated", "duplicated"], ["reordered", "reordered"], ["faults", "faults"],
];
const BAD = new Set(["lost", "duplicated", "reordered"]);
const FAULT_FILL = "rgba(245, 158, 11, 0.18)";
const FAULT_INK = "#b45309";

const view = { scenarios: new Map(), run: null, points: [], faults: [], counts: {}, settled: null, dirty: false, cut: false };

const api = (name, params = {}) => post(`/api/lab/${name}`, params);

function showError(text) {
  const box = $("#lab-error");
  box.hidden = !text;
  box.textContent = text || "";
}

// ------------------------------------------------------------------ picking

async function loadScenarios() {
  const list = await api("scenarios");
  const select = $("#scenario");
  select.replaceChildren();
  let first = null;
  for (const s of list) {
    view.scenarios.set(s.name, s);
    const option = el("option", { value: s.name, disabled: !s.available },
      s.available ? s.name : `${s.name} (needs root)`);
    select.append(option);
    if (s.available && first === null) first = s.name;
  }
  if (view.run && view.scenarios.has(view.run.scenario)) select.value = view.run.scenario;
  else if (first !== null) select.value = first;
  const blocked = list.filter((s) => !s.available);
  const note = $("#root-note");
  note.hidden = blocked.length === 0;
  note.textContent = blocked.length
    ? `${blocked.length} of ${list.length} scenarios change the kernel's network (namespaces, nftables) or mount small disks, which needs root: run \`sudo tidings web\` to offer them. ${blocked[0].reason ?? ""}`
    : "";
  describe();
}

function describe() {
  const s = view.scenarios.get($("#scenario").value);
  const about = $("#about");
  about.replaceChildren();
  if (!s) return;
  $("#seed").placeholder = String(s.seed);
  const size = $("#quick").checked ? s.quick : s.full;
  about.append(el("span", {}, s.description), el("br"),
    el("span", { className: "muted" }, `${size.users} users, ${size.messages} messages each`));
  if (s.invariant) about.append(el("br"), el("span", { className: "muted" }, `Holds: ${s.invariant}`));
  if (!s.available) about.append(el("br"), el("span", { className: "needs" }, s.reason ?? "cannot run here"));
}

async function start(event) {
  event.preventDefault();
  showError("");
  const seedText = $("#seed").value.trim();
  const params = { scenario: $("#scenario").value, quick: $("#quick").checked };
  if (seedText) params.seed = Number(seedText);
  if (seedText && !Number.isInteger(params.seed)) return showError("the seed is a whole number");
  try {
    await api("start", params);
  } catch (error) {
    showError(error.message);
  }
}

async function stop() {
  showError("");
  try { await api("stop"); } catch (error) { showError(error.message); }
}

// ------------------------------------------------------------------ the run

function setState(kind, text) {
  const pill = $("#run-state");
  pill.dataset.state = kind;
  pill.textContent = text;
  const going = kind === "running" || kind === "stopping";
  $("#start").disabled = going;
  $("#stop").disabled = kind !== "running";
}

function resetRun(run) {
  Object.assign(view, { run, points: [], faults: [], counts: {}, settled: null, cut: false });
  $("#run-title").textContent = `${run.scenario} · seed ${run.seed} · ${run.quick ? "quick" : "full"}`;
  if (view.scenarios.has(run.scenario)) { // the form shows what runs (a page opened mid-run too)
    $("#scenario").value = run.scenario;
    $("#quick").checked = run.quick;
    describe();
  }
  $("#phase").textContent = "starting";
  $("#verdict").hidden = true;
  drawCounters({}, null);
  $("#counts-note").textContent = "Live: what the devices have reported so far. Lost is judged by the checker after the run.";
  setState("running", "running");
  view.dirty = true;
}

function drawCounters(counts, final) {
  const box = $("#counters");
  box.replaceChildren();
  for (const [key, label] of COUNTERS) {
    let value = final && key in final ? final[key] : counts[key];
    if (key === "lost" && !final) value = "—";
    const cell = el("div", { title: LANES[key]?.meaning ?? "" }, el("dt", {}, label), el("dd", {}, String(value ?? 0)));
    if (BAD.has(key) && Number(value) > 0) cell.classList.add("bad");
    if (final && key in final) cell.classList.add("final");
    cell.dataset.counter = key;
    box.append(cell);
  }
}

function onTick(message) {
  for (const p of message.points) (p.lane === "fault" ? view.faults : view.points).push(p);
  view.counts = message.counts;
  if (message.settled != null) view.settled = message.settled;
  view.cut = Boolean(message.cut);
  drawCounters(view.counts, null);
  view.dirty = true;
}

function onVerdict(v) {
  const box = $("#verdict");
  box.hidden = false;
  const stopped = v.stopped ? " (stopped early)" : "";
  if (v.error) {
    box.className = "fail";
    $("#verdict-head").textContent = "No verdict";
    $("#verdict-text").textContent = v.error;
    $("#violations").replaceChildren(...(v.log ?? []).map((line) => el("li", {}, line)));
    setState("fail", "no verdict");
    return;
  }
  box.className = v.ok ? "pass" : "fail";
  $("#verdict-head").textContent = (v.ok ? "PASS" : "FAIL") + stopped;
  const c = v.counts;
  const kinds = Object.entries(v.by_kind).map(([k, n]) => `${n} ${k}`).join(", ");
  $("#verdict-text").textContent = v.ok
    ? `${c.composed} messages for ${c.targets} (message, device) pairs: nothing lost, duplicated or reordered, no false ✓. By the end the senders saw ✓✓ for ${c.delivered} pairs (receipts still on their way are no fault), ${c.expired} expired, ${c.refused} refused.`
    : `${v.violations} violations${kinds ? ": " + kinds : ""}.${v.settled ? "" : " The run did not settle, so losses were not judged."}`;
  $("#violations").replaceChildren(...v.listed.map((line) => el("li", {}, line)),
    ...(v.log ?? []).map((line) => el("li", { className: "muted" }, line)));
  const link = $("#report-link");
  link.hidden = !v.report;
  if (v.report) link.href = v.report;
  drawCounters(view.counts, c);
  $("#counts-note").textContent = "After the run: the checker's counts, from every device's store and the relay's (faults and received: as the devices reported them).";
  setState(v.ok ? "pass" : "fail", v.ok ? "passed" : "failed");
  $("#phase").textContent = "checked";
}

function onMessage(event) {
  const message = JSON.parse(event.data);
  if (message.type === "idle") setState("idle", "no run");
  else if (message.type === "run") resetRun(message);
  else if (message.type === "phase") {
    $("#phase").textContent = message.text;
    if (message.text.startsWith("stopping")) setState("stopping", "stopping");
  } else if (message.type === "tick") onTick(message);
  else if (message.type === "verdict") onVerdict(message);
}

// ------------------------------------------------------------------ the timeline

function draw() {
  requestAnimationFrame(draw);
  if (!view.dirty) return;
  view.dirty = false;
  const canvas = $("#lab-timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const lanes = Object.keys(LANES);
  const left = Math.min(100, width * 0.24), top = 18, bottom = 22;
  const laneHeight = (height - top - bottom) / lanes.length;
  const last = Math.max(5, ...view.points.map((p) => p.t), ...view.faults.map((f) => f.end ?? f.t));
  const span = last * 1.04;
  const x = (t) => left + (Math.max(0, t) / span) * (width - left - 8);
  g.font = "11px system-ui, sans-serif";
  g.textBaseline = "middle";
  // the faults, behind everything
  for (const f of view.faults) {
    const x0 = x(f.t);
    g.fillStyle = FAULT_INK;
    if (f.end != null) {
      g.fillStyle = FAULT_FILL;
      g.fillRect(x0, top, Math.max(2, x(f.end) - x0), height - top - bottom);
      g.fillStyle = FAULT_INK;
    } else {
      g.fillRect(x0 - 0.75, top, 1.5, height - top - bottom);
    }
    g.fillText(f.kind, x0 + 2, top - 8);
  }
  // lanes and their labels
  lanes.forEach((lane, i) => {
    const y = top + i * laneHeight;
    g.fillStyle = i % 2 ? "#fafbfc" : "#f3f5f8";
    g.globalAlpha = 0.6;
    g.fillRect(left, y, width - left, laneHeight);
    g.globalAlpha = 1;
    g.fillStyle = "#4b5563";
    g.fillText(LANES[lane].label, 4, y + laneHeight / 2);
  });
  // the points: one short mark per confirmation
  const row = Object.fromEntries(lanes.map((lane, i) => [lane, i]));
  for (const p of view.points) {
    const i = row[p.lane];
    if (i === undefined) continue;
    g.fillStyle = p.kind === "duplicate" ? "#dc2626" : LANES[p.lane].colour;
    const y = top + i * laneHeight + laneHeight * 0.2;
    g.fillRect(x(p.t) - 0.75, y, 1.5, laneHeight * 0.6);
  }
  if (view.settled != null) {
    g.fillStyle = "#111827";
    g.fillRect(x(view.settled) - 0.5, top, 1, height - top - bottom);
    g.fillText("settled", x(view.settled) + 3, height - bottom + 10);
  }
  // the time axis
  g.fillStyle = "#6b7385";
  const step = niceStep(span);
  for (let t = 0; t <= span; t += step) g.fillText(`${t.toFixed(step < 1 ? 1 : 0)} s`, x(t) - 8, height - 8);
  if (view.cut) g.fillText("(timeline cut: too many points)", left, 8);
  canvas.dataset.points = String(view.points.length);
  canvas.dataset.faults = String(view.faults.length);
}

function niceStep(span) {
  for (const step of [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600]) if (span / step <= 10) return step;
  return 1200;
}

function swatch(colour) {
  const mark = el("i");
  mark.style.background = colour; // CSSOM, which the page's style-src 'self' allows
  return mark;
}

function legend() {
  $("#legend").replaceChildren(
    ...Object.values(LANES).map((l) => el("li", { title: l.meaning }, swatch(l.colour), `${l.label}: ${l.meaning}`)),
    el("li", {}, swatch(FAULT_INK), "fault (band: a window; line: an instant such as kill -9)"));
}

// ------------------------------------------------------------------ start

$("#start-form").addEventListener("submit", start);
$("#stop").addEventListener("click", stop);
$("#scenario").addEventListener("change", describe);
$("#quick").addEventListener("change", describe);
window.addEventListener("resize", () => { view.dirty = true; });
legend();
drawCounters({}, null);
loadScenarios().catch((error) => showError(error.message));
new EventSource("/lab/events").onmessage = onMessage;
requestAnimationFrame(draw);
view.dirty = true;
