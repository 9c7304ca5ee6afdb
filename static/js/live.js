// The page's one WebSocket (htmx ws extension on #live). docs/protocol.md describes every
// frame. HTML frames are swapped by htmx (hx-swap-oob); JSON frames (they start with "{")
// carry per-viewer state and go to the handlers that other modules register with onFrame().
import { knownSeqs } from "./messages.js";
import { gettext } from "./i18n.js";

/** The element holding the socket; only pages of the app (not sign-in or profile pages) have one. */
export const live = document.getElementById("live");
/** The room this page shows, or null. */
export const roomId = live && live.dataset.roomId ? Number(live.dataset.roomId) : null;

const handlers = new Map();
const reconnectHooks = [];
let socket = null;
let serverTime = document.body.dataset.serverTime || null;

/** Send a JSON frame, if the socket is open. */
export function send(frame) {
  if (socket) socket.send(JSON.stringify(frame));
}

/** Call `handler(frame)` for every JSON frame of this type. */
export function onFrame(type, handler) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(handler);
}

/**
 * Ask for what this room's page missed: messages after the newest it shows and changes to
 * those it has (docs/protocol.md, resume). A page showing an older window (#messages
 * [data-detached], jump.js) asks for the changes only. `missedOnly`: skip the changes (a
 * window that just reached the latest messages, however long it has grown).
 */
export function resume({ missedOnly = false } = {}) {
  if (!roomId) return;
  const known = knownSeqs();
  const last = known.length ? Math.max(...known) : 0;
  const frame = {
    type: "resume",
    room: roomId,
    last_seq: last,
    oldest_seq: missedOnly ? last : known.length ? Math.min(...known) : 0,
    since: serverTime,
  };
  const list = document.getElementById("messages");
  if (list && "detached" in list.dataset) frame.detached = true;
  send(frame);
}

/** Call `hook()` when the socket opens again after it was lost (not on the first connection). */
export function onReconnect(hook) {
  reconnectHooks.push(hook);
}

function showBanner(text) {
  const banner = document.getElementById("connection-banner");
  banner.textContent = text;
  banner.hidden = false;
}

if (live) {
  // Pushes carry fragments for parts a page may not have (the assistant's name in a
  // composer that is not shown, the member count of a direct room): those are left out
  // here instead of reaching htmx, which would report each one as an error. Defined
  // before htmx processes the page: module scripts run before DOMContentLoaded.
  htmx.defineExtension("calpico-live", {
    transformResponse(text) {
      const template = document.createElement("template");
      template.innerHTML = text;
      const orphans = Array.from(template.content.children).filter((child) => {
        const oob = child.getAttribute("hx-swap-oob") || "true";
        const colon = oob.indexOf(":");
        const selector = colon >= 0 ? oob.slice(colon + 1) : child.id ? "#" + CSS.escape(child.id) : "";
        return selector && !document.querySelector(selector);
      });
      if (!orphans.length) return text;
      orphans.forEach((child) => child.remove());
      return template.innerHTML;
    },
  });

  let retries = 0;
  let openedAt = 0;

  live.addEventListener("htmx:wsOpen", (event) => {
    socket = event.detail.socketWrapper;
    openedAt = Date.now();
    document.getElementById("connection-banner").hidden = true;
    // Always, also on the first connection: a message may have arrived between rendering
    // the page and opening the socket.
    resume();
    if (live.dataset.connected) reconnectHooks.forEach((hook) => hook());
    live.dataset.connected = "yes";
  });

  live.addEventListener("htmx:wsClose", (event) => {
    const code = event.detail.event.code;
    // A connection that held for a while starts the back-off afresh; one the server keeps
    // closing right away (e.g. 4429) waits longer each time.
    if (openedAt && Date.now() - openedAt > 10000) retries = 0;
    openedAt = 0;
    if (code === 4401) return showBanner(gettext("You have been signed out. Reload the page to sign in again."));
    if (code === 4403 || code === 4404) return showBanner(gettext("You are no longer a member of this room."));
    showBanner(gettext("Reconnecting…"));
    // The extension retries 1006, 1011, 1012 and 1013 by itself; everything else
    // (a server restart's 1001, a normal close, a frame too big (1009), too many frames)
    // is ours to retry.
    if ([1006, 1011, 1012, 1013].includes(code)) return;
    const delay = Math.min(30000, 1000 * 2 ** retries) * (0.5 + Math.random() / 2);
    retries += 1;
    const wrapper = event.detail.socketWrapper;
    setTimeout(() => wrapper.reconnect(), delay);
  });

  live.addEventListener("htmx:wsBeforeMessage", (event) => {
    const text = event.detail.message;
    if (typeof text !== "string" || text[0] !== "{") return;
    event.preventDefault();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    (handlers.get(frame.type) || []).forEach((handler) => handler(frame));
  });
}

onFrame("hello", (frame) => {
  if (!serverTime) serverTime = frame.server_time;
});
onFrame("caught_up", (frame) => {
  serverTime = frame.server_time;
});
onFrame("reload", () => location.reload());
onFrame("error", (frame) => console.warn("Calpico:", frame.message));
onFrame("pong", () => {});
