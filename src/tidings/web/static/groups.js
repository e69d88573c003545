// tidings web app, groups: their entries in the sidebar, the "new group" form, a group's chat
// (each sender named, each own message's roll-up) and its members panel. Everything shown
// comes from the device — the group_* answers and the `group`, `message` and `status` events —
// and goes in as text (textContent), never as markup. A change the device refuses shows its
// error and changes nothing on screen.

import { $, clock, el } from "./common.js";

// What app.js lends: state, api, enterChat, showHistory, addMessage, showBanner, loadConversations.
let app;
// Each group as its last `group` event (or opening it) showed it: what a new event changed.
const seen = new Map();

export const isGroup = (conversation) => conversation.startsWith("group:");
const me = () => app.state.me;
const isMember = (g) => g.members.includes(me().account);
const accountsOf = (text) => text.split(/[\s,]+/).filter(Boolean);

export function initGroups(hooks) {
  app = hooks;
  $("#new-group").addEventListener("submit", createGroup);
  $("#open-members").addEventListener("click", () => { drawMembers(app.state.group); $("#members").hidden = false; });
  $("#members .close").addEventListener("click", () => { $("#members").hidden = true; });
  $("#add-members").addEventListener("submit", addMembers);
  $("#rename").addEventListener("submit", rename);
  $("#leave").addEventListener("click", leave);
}

// ------------------------------------------------------------------ sidebar

// The sidebar's entries: groups without a message yet first (just made or joined), then every
// conversation, most recently active first (`chatItem` draws a one-to-one chat's).
export function sidebarItems(list, groups, chatItem) {
  const byConversation = new Map(groups.map((g) => [g.conversation, g]));
  const talked = new Set(list.map((c) => c.conversation));
  const fresh = groups.filter((g) => !talked.has(g.conversation) && isMember(g));
  const rest = list.map((c) => {
    const g = byConversation.get(c.conversation);
    return g ? groupItem(g, c) : isGroup(c.conversation) ? null : chatItem(c);
  });
  return [...fresh.map((g) => groupItem(g, null)), ...rest.filter(Boolean)];
}

function groupItem(g, summary) {
  const current = app.state.group?.group_id === g.group_id;
  const sub = isMember(g) ? `group · ${g.members.length} members` : "group · you are not in it";
  const item = el("li", { className: `group${current ? " current" : ""}${isMember(g) ? "" : " gone"}`, dataset: { group: g.group_id } },
    el("span", { className: "label" }, el("span", { className: "name", textContent: g.name }), el("span", { className: "sub muted", textContent: sub })),
    el("span", { className: "when muted", textContent: summary?.last_at ? clock(summary.last_at) : "" }));
  if (summary?.unread) item.append(el("span", { className: "badge", textContent: String(summary.unread), title: `${summary.unread} unread` }));
  item.addEventListener("click", () => openGroup(g.group_id));
  return item;
}

async function createGroup(event) {
  event.preventDefault();
  const error = $("#new-group-error");
  const params = { name: $("#group-name").value.trim(), members: accountsOf($("#group-members").value) };
  let g;
  try {
    g = await app.api("group_create", params);
  } catch (e) {
    error.textContent = e.message; // the device's own words: "no account 'zed' at the relay"
    error.hidden = false;
    return;
  }
  error.hidden = true;
  $("#new-group").reset();
  $("#new-group-box").open = false;
  await openGroup(g.group_id);
}

// ------------------------------------------------------------------ a group's chat

export async function openGroup(groupId) {
  const g = await app.api("group_info", { group: groupId });
  if (!seen.has(g.group_id)) seen.set(g.group_id, g);
  app.enterChat(null, g);
  showHead(g);
  await app.showHistory();
}

function showHead(g) {
  const member = isMember(g);
  $("#contact").textContent = g.name;
  $("#chat-sub").textContent = member
    ? g.members.map((a) => (a === me().account ? "you" : a)).join(", ")
    : "you are no longer a member: nothing more reaches this device";
  $("#open-members").hidden = false;
  $("#composer").hidden = !member;
  if (!$("#members").hidden) drawMembers(g);
}

export async function sendToGroup(text) {
  const { group_id: group } = app.state.group;
  const { message_id } = await app.api("send_group", { group, text });
  // drawn at once as it is now (in the outbox: …); its roll-up follows its status events
  app.addMessage({ message_id, direction: "out", body: text, from: me().device, sent_at: Date.now() / 1000, status: "pending" });
  refreshRollup(message_id);
  app.loadConversations();
}

// The roll-up of an own group message, as the device counts it now. Only the answer to the
// latest ask is drawn, so an answer that overtakes a later one cannot set it back.
export async function refreshRollup(messageId) {
  const entry = app.state.messages.get(messageId);
  if (!entry?.group) return;
  const asked = (entry.asked = (entry.asked ?? 0) + 1);
  let summary;
  try {
    summary = await app.api("group_status", { message_id: messageId });
  } catch {
    return; // gone (it expired): its next event, if any, asks again
  }
  if (entry.asked !== asked) return;
  entry.summary = summary;
  showRollup(entry);
}

// "✓ delivered to 2 of 3 · read by 1": member accounts (one counts once any of its devices
// did); the devices in the title. ✗ when the relay refused it for good.
export function showRollup(entry) {
  const r = entry.summary;
  let mark, text, title;
  if (entry.status === "failed") [mark, text, title] = ["✗", "not sent", "the relay refused it"];
  else if (!r) [mark, text, title] = ["…", "", "asking the device"];
  else if (r.members === 0) [mark, text, title] = ["✓", "no one else is in the group", "kept on this device"];
  else if (r.sent_devices === 0 && r.delivered_devices === 0) [mark, text, title] = ["…", "not yet at the relay", "waiting to reach the relay"];
  else {
    mark = r.delivered === r.members ? "✓✓" : "✓";
    text = `delivered to ${r.delivered} of ${r.members}` + (r.read ? ` · read by ${r.read}` : "");
    title = `the relay stored it for ${r.sent_devices} of ${r.devices} member devices; ${r.delivered_devices} have it; ${r.read_devices} displayed it`;
  }
  entry.tick.textContent = mark;
  entry.tick.title = title;
  entry.rollup.textContent = text;
  entry.rollup.dataset.delivered = r?.delivered ?? 0;
  entry.rollup.dataset.read = r?.read ?? 0;
}

// ------------------------------------------------------------------ membership

// A `group` event: the group as the device now has it. The open group's header, members
// and a line saying what changed ("alice.1 removed carol") follow it.
export function onGroupChange(e) {
  const before = seen.get(e.group_id);
  seen.set(e.group_id, e);
  app.loadConversations();
  const open = app.state.group;
  if (open?.group_id !== e.group_id) return;
  app.state.group = { ...open, name: e.name, members: e.members, admins: e.admins };
  if (before) for (const line of changes(before, e)) notice(line);
  showHead(app.state.group);
}

function changes(before, after) {
  const name = (a) => (a === me().account ? "you" : a);
  const by = after.by === me().device ? "you" : after.by;
  const author = after.by.split(".")[0];
  const added = after.members.filter((a) => !before.members.includes(a));
  const gone = before.members.filter((a) => !after.members.includes(a));
  const promoted = after.admins.filter((a) => !before.admins.includes(a) && before.members.includes(a));
  const lines = [];
  if (added.length) lines.push(`${by} added ${added.map(name).join(", ")}`);
  for (const a of gone) lines.push(a === author ? `${name(a)} left` : `${by} removed ${name(a)}`);
  for (const a of promoted) lines.push(`${name(a)} ${a === me().account ? "are" : "is"} now an admin`);
  if (after.name !== before.name) lines.push(`${by} renamed the group “${after.name}”`);
  return lines;
}

function notice(text) {
  const list = $("#messages");
  list.append(el("li", { className: "system", textContent: text }));
  list.scrollTop = list.scrollHeight;
}

function drawMembers(g) {
  const mine = me().account;
  const admin = g.admins.includes(mine);
  const member = isMember(g);
  $("#members-title").textContent = g.name;
  $("#member-list").replaceChildren(...g.members.map((a) => {
    const li = el("li", { dataset: { account: a } }, el("span", { className: "name", textContent: a === mine ? `${a} (you)` : a }));
    if (g.admins.includes(a)) li.append(el("span", { className: "tag", textContent: "admin" }));
    if (admin && a !== mine) {
      if (!g.admins.includes(a)) li.append(action("make admin", "group_promote", { member: a }));
      li.append(action("remove", "group_remove", { member: a }));
    }
    return li;
  }));
  $("#admins-only").textContent = admin ? "" : `Only admins (${g.admins.join(", ")}) can add or remove members.`;
  for (const id of ["#add-members", "#rename", "#leave"]) $(id).hidden = !member;
  $("#leave").textContent = "leave group";
  delete $("#leave").dataset.armed;
}

function action(label, method, params) {
  const button = el("button", { className: method === "group_remove" ? "small danger" : "small", textContent: label, dataset: { action: method } });
  button.addEventListener("click", () => change(method, params));
  return button;
}

// Ask the device for a change of the open group: drawn from its answer, or its error shown.
async function change(method, params = {}) {
  const error = $("#members-error");
  const { group_id } = app.state.group;
  let g;
  try {
    g = await app.api(method, { group: group_id, ...params });
  } catch (e) {
    error.textContent = e.message; // "bob is not an admin": nothing changed
    error.hidden = false;
    return false;
  }
  error.hidden = true;
  if (app.state.group?.group_id === g.group_id) {
    app.state.group = g;
    showHead(g);
    drawMembers(g);
  }
  app.loadConversations();
  return true;
}

async function addMembers(event) {
  event.preventDefault();
  if (await change("group_add", { members: accountsOf($("#add-accounts").value) })) $("#add-accounts").value = "";
}

async function rename(event) {
  event.preventDefault();
  if (await change("group_rename", { name: $("#rename-text").value.trim() })) $("#rename-text").value = "";
}

// Leaving takes a second click (no confirm(): it would block the page).
async function leave() {
  const button = $("#leave");
  if (!button.dataset.armed) {
    button.dataset.armed = "1";
    button.textContent = "leave: click again to confirm";
    return;
  }
  await change("group_leave");
}
