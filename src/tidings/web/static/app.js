// tidings web app: talks to the device's own process only (/api/METHOD, /events).
// Message text is only ever inserted as text (textContent), never as markup.

import { $, clock, el, post } from "./common.js";
import { WORD, closeJourney, journeyShown, openJourney } from "./journey.js";
import { initGroups, isGroup, onGroupChange, openGroup, refreshRollup, sendToGroup, showRollup, sidebarItems } from "./groups.js";
const TICK = { pending: "…", sent: "✓", delivered: "✓✓", read: "✓✓", expired: "✗", failed: "!" };
// contact: the open one-to-one chat's account; group: the open group (group_info's answer)
const state = { me: null, contact: null, group: null, conversation: null, messages: new Map() };
// Status events of a message this page has not drawn yet (its send's answer is still on the
// way): applied, in order, once it is drawn, so no tick is skipped.
const early = new Map();

const api = (name, params = {}) => post(`/api/${name}`, params);
// Messages of a conversation loaded at once; "show older messages" loads the page before.
const PAGE = 200;

const contactOf = (conversation) => {
  const parts = conversation.split(":");
  return parts.find((p) => p !== state.me.account) ?? state.me.account;
};

// ------------------------------------------------------------------ connection state

function showState(kind, text) {
  const pill = $("#state");
  pill.dataset.state = kind;
  pill.textContent = text;
}

function onConnection(e) {
  if (e.event === "connected") showState("online", "online");
  else if (e.event === "connect-failed") showState("offline", `cannot reach the relay: ${e.reason}; retry in ${Math.round(e.retry_in)} s`);
  else if (e.event === "disconnected") showState(e.fatal ? "stopped" : "offline", e.fatal ? `stopped: ${e.reason}` : "disconnected; reconnecting");
  else if (e.event === "storage-failed") showState("stopped", `stopped: ${e.message}`);
  else if (e.event === "catching-up") {
    const progress = $("#progress");
    progress.hidden = e.finished;
    progress.textContent = `catching up ${e.done.toLocaleString()} / ${e.total.toLocaleString()}` + (e.rate ? ` (${Math.round(e.rate).toLocaleString()}/s)` : "");
  }
}

// ------------------------------------------------------------------ conversations

// The sidebar: one-to-one chats and groups (groups.js draws theirs), newest first.
async function loadConversations() {
  const [list, groups] = await Promise.all([api("conversations"), api("groups", { left: true })]);
  const ul = $("#conversations");
  ul.replaceChildren(...sidebarItems(list, groups, chatItem));
  $("#no-conversations").hidden = ul.children.length > 0;
}

function chatItem(c) {
  const contact = contactOf(c.conversation);
  const item = el("li", { dataset: { contact }, className: contact === state.contact ? "current" : "" },
    el("span", { className: "name", textContent: contact }),
    el("span", { className: "when muted", textContent: c.last_at ? clock(c.last_at) : "" }));
  if (c.unread) item.append(el("span", { className: "badge", textContent: String(c.unread), title: `${c.unread} unread` }));
  item.addEventListener("click", () => openChat(contact));
  return item;
}

// What the open chat is, as history's params; and the key that tells one chat from another.
const where = () => (state.group ? { conversation: state.group.conversation } : { contact: state.contact });
const openKey = () => state.group?.group_id ?? state.contact;

// Empties the view for a chat with `contact` or the group `group` (one of them).
function enterChat(contact, group) {
  Object.assign(state, { contact, group, conversation: group?.conversation ?? null });
  state.messages.clear();
  document.body.classList.remove("menu-open");
  document.body.classList.toggle("in-group", Boolean(group));
  for (const id of ["#open-safety", "#timer-box", "#open-members", "#members", "#banner"]) $(id).hidden = true;
  $("#chat-sub").textContent = "";
  $("#composer").hidden = false;
  $("#messages").replaceChildren();
}

async function openChat(contact) {
  enterChat(contact, null);
  $("#contact").textContent = contact;
  $("#open-safety").hidden = false;
  showTimer(await api("timer", { contact }));
  await showHistory();
}

// The open chat's last page of messages, marked shown.
async function showHistory() {
  const key = openKey();
  const history = await api("history", { ...where(), limit: PAGE });
  if (openKey() !== key) return;
  if (history.length) state.conversation = history[0].conversation;
  for (const m of history) addMessage(m);
  if (history.length === PAGE) $("#messages").prepend(olderButton(history[0].message_id));
  await markShown(history.filter((m) => "seen_at" in m));
  await loadConversations();
  $("#text").focus();
}

// A button at the top of the conversation that loads the page of messages shown before
// `first` (and puts another button above them while there may be more).
function olderButton(first) {
  const button = el("button", { className: "link", textContent: "show older messages" });
  const li = el("li", { className: "older" }, button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    const key = openKey();
    const page = await api("history", { ...where(), limit: PAGE, before: first });
    if (openKey() !== key) return;
    const list = $("#messages");
    const below = list.scrollHeight - list.scrollTop; // keep what the reader looks at in place
    li.remove();
    for (const m of page.slice().reverse()) addMessage(m, { older: true });
    if (page.length === PAGE) list.prepend(olderButton(page[0].message_id));
    list.scrollTop = list.scrollHeight - below;
    await markShown(page.filter((m) => "seen_at" in m));
  });
  return li;
}

// Search: the matching messages of every chat, newest first; a click opens that chat.
async function search(event) {
  event.preventDefault();
  const text = $("#search-text").value.trim();
  if (!text) return;
  let hits;
  try {
    hits = await api("search", { text, limit: PAGE });
  } catch (error) {
    showBanner(error.message);
    return;
  }
  enterChat(null, null);
  $("#contact").textContent = `Search: ${text}`;
  $("#composer").hidden = true;
  const list = $("#messages");
  list.replaceChildren(...hits.map((m) => {
    const group = isGroup(m.conversation) ? m.conversation.slice("group:".length) : null;
    const contact = group ? "a group" : contactOf(m.conversation);
    const who = m.direction === "out" ? "me" : m.from;
    const li = el("li", { className: "hit", dataset: { id: m.message_id }, title: `open the chat with ${contact}` },
      el("span", { className: "where", textContent: `${contact} · ${who} · ${clock(m.sent_at)}` }),
      el("span", { className: "body", textContent: m.body }));
    li.addEventListener("click", () => (group ? openGroup(group) : openChat(contact)));
    return li;
  }));
  if (!hits.length) list.append(el("li", { className: "hit muted", textContent: `no messages with “${text}”` }));
}

function addMessage(m, { older = false } = {}) {
  if (state.messages.has(m.message_id)) return;
  const out = m.direction === "out";
  const tick = el("span", { className: "tick" });
  const note = el("span", { className: "note" });
  const group = Boolean(state.group) && out; // its status is a roll-up over the members
  const rollup = el("span", { className: "rollup" });
  const li = el("li", { className: out ? "out" : "in", dataset: { id: m.message_id } },
    el("span", { className: "body", textContent: m.body }),
    el("span", { className: "meta" }, el("time", { textContent: clock(m.sent_at) }), ...(group ? [rollup] : []), tick, note));
  if (m.expires_in) {
    li.classList.add("disappearing");
    li.querySelector(".meta").append(el("span", { className: "timer", textContent: "◷", title: `disappears ${m.expires_in} s after it was read` }));
  }
  if (!out && m.from.split(".")[0] !== state.contact) li.prepend(el("span", { className: "from muted", textContent: m.from }));
  else if (out && (state.group || (m.from && m.from !== state.me.device))) {
    li.prepend(el("span", { className: "from muted", textContent: m.from && m.from !== state.me.device ? `me (${m.from})` : "me" }));
  }
  const entry = { li, tick, note, out, status: m.status ?? null, devices: {}, group, rollup, summary: m.group_status ?? null };
  state.messages.set(m.message_id, entry);
  if (out) {
    li.tabIndex = 0;
    li.title = "show its journey";
    li.addEventListener("click", () => openJourney(m.message_id));
    setStatus(entry, m.status ?? "pending");
    if (m.failed) note.textContent = `refused: ${m.failed.reason ?? m.failed.code}`;
  }
  const list = $("#messages");
  if (older) { // a page of older ones comes newest first: each goes on top
    list.prepend(li);
    return;
  }
  list.append(li);
  list.scrollTop = list.scrollHeight;
  for (const e of early.get(m.message_id) ?? []) onEvent(e);
  early.delete(m.message_id);
}

// The conversation's disappearing-messages timer, as the select shows it (a value set
// elsewhere that is not a preset gets its own option).
function showTimer(timer) {
  const select = $("#timer");
  const value = String(timer.seconds);
  if (![...select.options].some((o) => o.value === value)) {
    select.append(el("option", { value, textContent: `${timer.seconds} s` }));
  }
  select.value = value;
  $("#timer-box").hidden = false;
  $("#timer-box").dataset.seconds = value;
  $("#timer-box").title = timer.seconds
    ? `disappearing messages: ${select.selectedOptions[0].textContent}, set by ${timer.set_by}`
    : "disappearing messages: off";
}

async function setTimer() {
  if (!state.contact) return;
  try {
    showTimer(await api("set_timer", { contact: state.contact, seconds: Number($("#timer").value) }));
  } catch (error) {
    showBanner(`timer not set: ${error.message}`);
  }
}

function setStatus(entry, status) {
  entry.status = status;
  entry.tick.dataset.status = status;
  entry.li.dataset.status = status;
  if (entry.group) return showRollup(entry); // "delivered to 2 of 3 · read by 1"
  entry.tick.textContent = TICK[status] ?? "?";
  const per = Object.entries(entry.devices).map(([d, s]) => `${TICK[s]} ${WORD[s]} on ${d}`);
  entry.tick.title = per.length ? per.join(", ") : WORD[status];
  entry.li.dataset.status = status;
}

async function markShown(received) {
  const unseen = received.filter((m) => m.seen_at == null).map((m) => m.message_id);
  if (unseen.length) await api("mark_seen", { message_ids: unseen });
  if (document.visibilityState !== "visible") return;
  const unread = received.filter((m) => m.read_at == null).map((m) => m.message_id);
  if (unread.length) await api("mark_read", { message_ids: unread });
}

async function send(event) {
  event.preventDefault();
  const box = $("#text");
  const text = box.value;
  if (!text.trim() || !(state.contact || state.group)) return;
  box.value = "";
  try {
    if (state.group) return await sendToGroup(text);
    const { message_id } = await api("send", { to: state.contact, text });
    // drawn at once as it is now: committed to the outbox (…); its ticks follow as events
    // it carries the chat's timer, as the device composed it
    const expires_in = Number($("#timer-box").dataset.seconds || 0);
    addMessage({ message_id, direction: "out", body: text, from: state.me.device, sent_at: Date.now() / 1000, status: "pending", expires_in });
    loadConversations();
  } catch (error) {
    box.value = text;
    showBanner(`not sent: ${error.message}`);
  }
}

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.hidden = false;
}

// ------------------------------------------------------------------ events

function onEvent(e) {
  if (["connected", "connect-failed", "disconnected", "catching-up", "storage-failed"].includes(e.event)) onConnection(e);
  else if (e.event === "message") {
    if (isOpen(e.conversation)) {
      state.conversation = e.conversation;
      addMessage({ ...e, direction: e.direction ?? "in", seen_at: null, read_at: null }); // "out": sent by another of my devices
      markShown([{ message_id: e.message_id, seen_at: null, read_at: null }]).then(loadConversations);
    } else loadConversations();
  } else if (e.event === "status") {
    const entry = state.messages.get(e.message_id);
    if (!entry && openKey()) {
      if (early.size > 1000) early.clear(); // statuses of other conversations' messages
      early.set(e.message_id, [...(early.get(e.message_id) ?? []), e]);
    }
    if (entry) {
      if (e.device !== "all") entry.devices[e.device] = e.status;
      setStatus(entry, e.overall);
      if (e.overall !== "failed") entry.note.textContent = "";
      if (entry.group) refreshRollup(e.message_id);
    }
    if (journeyShown() === e.message_id) openJourney(e.message_id);
  } else if (e.event === "group") {
    onGroupChange(e);
  } else if (e.event === "devices-changed") {
    const what = [...e.added.map((d) => `${d} was linked to this account`), ...e.removed.map((d) => `${d} was unlinked`)];
    showBanner(`${what.join("; ")} — check "this device" if that was not you`);
  } else if (e.event === "timer") {
    if (state.contact && contactOf(e.conversation) === state.contact) {
      showTimer({ seconds: e.seconds, set_by: e.by });
      if (e.by !== state.me.device) showBanner(`${e.by} set disappearing messages to ${e.seconds ? $("#timer").selectedOptions[0].textContent : "off"}`);
    }
  } else if (e.event === "expired") {
    for (const id of e.message_ids) { // gone from this device: gone from view
      state.messages.get(id)?.li.remove();
      state.messages.delete(id);
    }
    loadConversations();
  } else if (e.event === "read-elsewhere") {
    loadConversations(); // read on another device of this account: the unread counts clear
  } else if (e.event === "refused") {
    const entry = state.messages.get(e.message_id);
    if (entry) entry.note.textContent = e.final ? `refused: ${e.reason}` : `refused for now: ${e.reason}; the outbox retries`;
  } else if (e.event === "identity-changed") {
    if (state.contact && e.device.split(".")[0] === state.contact) showBanner(`${e.device} has ${e.new ? "a new device" : "a new identity key"}: the safety number changed`);
  }
}

// Whether `conversation` is the one on screen.
const isOpen = (conversation) => (state.group
  ? conversation === state.group.conversation
  : Boolean(state.contact) && !isGroup(conversation) && contactOf(conversation) === state.contact);

// The open chat drawn again from the device (after a reconnect, or when the tab shows again).
function reopen() {
  if (state.group) openGroup(state.group.group_id);
  else if (state.contact) openChat(state.contact);
}

function listen() {
  const source = new EventSource("/events");
  source.onopen = () => { loadConversations(); reopen(); };
  source.onmessage = (message) => onEvent(JSON.parse(message.data));
  source.onerror = () => showState("offline", "lost the app's own process; retrying");
}

// ------------------------------------------------------------------ dialogs

async function openSafety() {
  const dialog = $("#safety");
  const show = (n) => {
    $("#safety-contact").textContent = state.contact;
    if (!n) { $("#safety-number").textContent = "no session yet: exchange a message first"; $("#safety-state").textContent = ""; return; }
    const groups = n.number.match(/.{5}/g);
    $("#safety-number").textContent = [0, 4, 8].map((i) => groups.slice(i, i + 4).join(" ")).join("\n");
    $("#safety-state").textContent = n.verified ? "✓ verified" : "not verified";
    dialog.dataset.number = n.number;
  };
  show(await api("safety_number", { account: state.contact }));
  showContactDevices(state.contact);
  dialog.showModal();
  dialog.onclose = async () => {
    if (dialog.returnValue === "verify") await api("safety_number", { account: state.contact, verify: dialog.dataset.number });
    else if (dialog.returnValue === "unverify") await api("safety_number", { account: state.contact, unverify: true });
  };
}

// The contact's devices as the relay lists them, and which of them this safety number covers
// (a device added since has no session yet: the number changes once it has).
async function showContactDevices(contact) {
  const box = $("#safety-devices");
  box.replaceChildren();
  let listed;
  try {
    listed = await api("devices", { account: contact });
  } catch (error) {
    box.append(el("li", { className: "muted", textContent: `the relay's list is not available: ${error.message}` }));
    return;
  }
  const number = await api("safety_number", { account: contact });
  const covered = new Set(number?.remote_devices ?? []);
  if (!listed.device_ids.length) box.append(el("li", { className: "muted", textContent: "no devices (no such account?)" }));
  for (const id of listed.device_ids) {
    const name = `${contact}.${id}`;
    const known = covered.has(id);
    box.append(el("li", { dataset: { device: name } }, el("span", { className: "mono", textContent: name }), " ",
      el("span", { className: known ? "muted" : "note", textContent: known ? "in this safety number" : "no session yet" })));
  }
}

async function openDevice() {
  const [status, settings] = await Promise.all([api("status"), api("settings")]);
  const info = $("#device-info");
  info.replaceChildren();
  const row = (k, v) => info.append(el("dt", { textContent: k }), el("dd", { textContent: v }));
  row("device", status.device);
  row("relay", status.relay);
  row("connected", status.connected ? "yes" : "no");
  row("outbox", String(status.outbox));
  try {
    const devices = await api("devices", { account: status.account });
    row("devices of " + status.account, devices.device_ids.map((d) => `${status.account}.${d}`).join(", "));
  } catch (error) { row("devices", `unknown (${error.message})`); }
  $("#read-receipts").checked = settings.read_receipts;
  $("#device").showModal();
}

async function linkCode() {
  try {
    const answer = await api("link_code");
    $("#qr").innerHTML = answer.qr_svg; // drawn by the app's own process (segno), not by a peer
    $("#code").textContent = `${answer.code} (valid until ${clock(answer.expires_at)})`;
  } catch (error) { $("#code").textContent = `no code: ${error.message}`; }
}

async function setReadReceipts(event) {
  const error = $("#settings-error");
  try {
    await api("settings", { read_receipts: event.target.checked });
    error.hidden = true;
  } catch (e) {
    event.target.checked = !event.target.checked;
    error.textContent = e.message;
    error.hidden = false;
  }
}

// ------------------------------------------------------------------ start

async function start() {
  const status = await api("status");
  state.me = status;
  $("#me").textContent = status.device;
  showState(status.connected ? "online" : "offline", status.connected ? "online" : status.stopped ? `stopped: ${status.stopped}` : "connecting…");
  $("#composer").addEventListener("submit", send);
  $("#search").addEventListener("submit", search);
  $("#text").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) send(e); });
  $("#new-chat").addEventListener("submit", (e) => { e.preventDefault(); const c = $("#new-contact").value.trim(); if (c) { $("#new-contact").value = ""; openChat(c); } });
  $("#journey .close").addEventListener("click", closeJourney);
  $("#open-safety").addEventListener("click", openSafety);
  $("#open-device").addEventListener("click", openDevice);
  $("#link-code").addEventListener("click", linkCode);
  $("#read-receipts").addEventListener("change", setReadReceipts);
  $("#timer").addEventListener("change", setTimer);
  $("#menu").addEventListener("click", () => document.body.classList.toggle("menu-open"));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reopen();
  });
  initGroups({ state, api, enterChat, showHistory, addMessage, showBanner, loadConversations });
  await loadConversations();
  listen();
}

start();
