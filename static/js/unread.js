// Unread counts: the sidebar's badges, the tab's title, and read positions sent to the server.
import { me, pageVisible } from "./dom.js";
import { onFrame, roomId, send } from "./live.js";
import { knownSeqs } from "./messages.js";
import { gettext, interpolate } from "./i18n.js";

const READ_EVERY = 2000; // ms: read positions go out at most this often, however busy the room

let baseTitle = document.title;
// Messages that arrive in the room on screen while the tab is hidden count as unread
// here: the server sends unread counts only for rooms that are not on screen.
let unseenHere = 0;
let readTimer = null;
let lastReadSent = 0;

export function updateTitle() {
  let total = 0;
  document.querySelectorAll(".room-list .badge").forEach((badge) => {
    if (!badge.closest(".is-muted")) total += Number(badge.dataset.count || 0);
  });
  document.title = total ? "(" + total + ") " + baseTitle : baseTitle;
}

function setBadge(room, count) {
  const badge = document.getElementById("sidebar-badge-" + room);
  if (badge) {
    badge.textContent = count;
    badge.dataset.count = count;
    badge.title = interpolate(gettext("%(count)s unread"), { count: count });
    badge.hidden = count === 0;
    badge.closest(".room-link").classList.toggle("has-unread", count > 0);
  }
  updateTitle();
}

function markRead() {
  if (!roomId || !pageVisible()) return;
  unseenHere = 0;
  setBadge(roomId, 0);
  if (readTimer) return;
  const wait = Math.max(0, READ_EVERY - (Date.now() - lastReadSent));
  readTimer = setTimeout(() => {
    readTimer = null;
    lastReadSent = Date.now();
    const known = knownSeqs();
    if (known.length) send({ type: "read", room: roomId, seq: Math.max(...known) });
  }, wait);
}

onFrame("unread", (frame) => {
  setBadge(frame.room, frame.room === roomId && pageVisible() ? 0 : frame.count);
});
onFrame("caught_up", markRead);

document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
  if (event.detail.target.id !== "messages" || pageVisible()) return;
  Array.from(event.detail.fragment.children).forEach((child) => {
    const author = child.dataset && child.dataset.authorId;
    if (author && author !== me && !document.getElementById(child.id)) unseenHere++;
  });
});

document.addEventListener("htmx:wsAfterMessage", () => {
  if (unseenHere) setBadge(roomId, unseenHere);
  if (document.getElementById("messages")) markRead();
});

document.body.addEventListener("htmx:oobAfterSwap", (event) => {
  const target = event.detail.target;
  if (target && target.id === "room-title") {
    // The group was renamed: the tab says so too.
    baseTitle = document.getElementById("room-title").textContent + " · Calpico";
    updateTitle();
  }
});

document.addEventListener("visibilitychange", markRead);
document.addEventListener("DOMContentLoaded", updateTitle);
