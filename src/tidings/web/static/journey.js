// tidings web app, a sent message's journey: its confirmation points on a time axis, each
// with what it proves and what it does not (the device's `trace`). Text only as text.

import { $, el, post } from "./common.js";

export const WORD = {
  pending: "waiting to reach the relay", sent: "stored by the relay", delivered: "delivered",
  read: "read", expired: "expired before it was fetched", failed: "refused",
};
const MEANING = {
  composed: "Stored in this device's outbox: it survives a crash of this app. Proves nothing about the network.",
  written: "Handed to this machine's kernel (a socket write). Proves nothing has left the machine.",
  tcp_acked: "The relay machine's kernel acknowledged the bytes (TCP). They reached a buffer there — not the relay's disk.",
  sent: "✓ The relay committed it to disk. It survives a relay crash; no device has it yet.",
  delivered: "✓✓ That device decrypted it and committed it to its own disk: the end-to-end proof.",
  read: "That device displayed it (its read receipts are on).",
  expired: "✗ It waited at the relay past retention; that device never fetched it.",
  refused: "The relay refused it.",
};

// The message whose journey is open (null: none).
let shown = null;
export const journeyShown = () => shown;

export function closeJourney() {
  $("#journey").hidden = true;
  shown = null;
}

export async function openJourney(messageId) {
  shown = messageId;
  const trace = await post("/api/trace", { message_id: messageId });
  const panel = $("#journey");
  panel.hidden = false;
  $("#journey-id").textContent = `${trace.message_id} · ${WORD[trace.status]}`;
  const points = trace.points;
  const t0 = points.length ? points[0].at : 0;
  const span = Math.max(0.001, (points.at(-1)?.at ?? t0) - t0);
  const svg = $("#timeline");
  const width = 320, height = 64, pad = 16;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const ns = "http://www.w3.org/2000/svg";
  const shape = (tag, attrs) => { const s = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) s.setAttribute(k, v); return s; };
  svg.replaceChildren(shape("line", { x1: pad, y1: height / 2, x2: width - pad, y2: height / 2, class: "axis" }));
  const list = $("#points");
  list.replaceChildren();
  points.forEach((p, i) => {
    const [kind, device] = p.point.split(":");
    const x = pad + ((p.at - t0) / span) * (width - 2 * pad);
    const dot = shape("circle", { cx: x, cy: height / 2, r: 5, class: `dot ${kind}` });
    dot.append(Object.assign(document.createElementNS(ns, "title"), { textContent: p.point }));
    svg.append(dot);
    if (i === 0 || i === points.length - 1) svg.append(Object.assign(shape("text", { x, y: height / 2 - 10, class: "label", "text-anchor": i ? "end" : "start" }), { textContent: i ? `+${fmt(p.at - t0)}` : "0" }));
    const meaning = MEANING[kind] ?? "";
    const detail = p.detail ? ` (${readable(p.detail)})` : "";
    list.append(el("li", { className: kind },
      el("span", { className: "point mono", textContent: kind === "refused" && device ? `refused for now: ${device}` : (device ? `${kind} at ${device}` : kind) }),
      el("span", { className: "muted", textContent: ` +${fmt(p.at - t0)}${detail}` }),
      el("p", { className: "small", textContent: device && kind === "refused" ? "The relay refused it for now; the outbox retries." : meaning })));
  });
}

// "stored_at=1796302146.37" → "the relay's clock: 12:49:06.370"
function readable(detail) {
  return detail.split(/\s+/).map((part) => {
    const [key, value] = part.split("=");
    const t = Number(value);
    if (value === undefined || !(t > 1e9)) return part;
    const when = new Date(t * 1000);
    const stamp = when.toLocaleTimeString([], { hour12: false }) + "." + String(when.getMilliseconds()).padStart(3, "0");
    return key === "stored_at" ? `the relay's clock: ${stamp}` : key === "device_time" ? `that device's clock: ${stamp}` : `${key}: ${stamp}`;
  }).join(", ");
}

const fmt = (seconds) => seconds < 1 ? `${(seconds * 1000).toFixed(1)} ms` : seconds < 120 ? `${seconds.toFixed(2)} s` : `${(seconds / 60).toFixed(1)} min`;
