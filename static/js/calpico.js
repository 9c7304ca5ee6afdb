// Calpico's own script: small touches on top of server-rendered pages and htmx, as native
// ES modules without a build step. Every page loads this one file (base.html, after htmx
// and its ws extension); it imports every module itself, so the browser finds them all
// at once. Module scripts run after the page is parsed and before DOMContentLoaded, so
// the htmx extension in live.js is defined before htmx processes the page.
//
//   live.js           the WebSocket: resume, reconnect, JSON frames to the modules below
//   messages.js       the message list: no duplicates, sequence order, follow new messages
//   grouping.js       consecutive messages from one person share a header
//   receipts.js       "Seen" under my latest message
//   unread.js         unread badges, the tab's title, read positions
//   sidebar.js        the room list: reorder on activity, refresh after a reconnect
//   typing.js         "… is typing"
//   presence.js       online dots
//   viewer.js         per-viewer marks (my messages, mentions of me, blocked authors, local times)
//   toasts.js         flash messages and live toasts
//   notifications.js  desktop notifications and their switch
//   push.js           the service worker, this device's push subscription, "viewing" frames
//   scroll.js         the history pane's position
//   composer.js       autosize, Enter to send, a fresh client_id per showing of the page
//   attachments.js    a file picked, pasted or dropped; sending it with progress
//   mentions.js       the @-mention combobox
//   confirm.js        data-confirm forms
//   reactions.js      the quick row, the emoji picker, per-viewer marks on reaction chips
//   private.js        private answers in a room: the question box and new cards
//   jump.js           a page opened on one message: its window of history, live messages after it
import "./dom.js";
import "./live.js";
import "./messages.js";
import "./grouping.js";
import "./receipts.js";
import "./unread.js";
import "./sidebar.js";
import "./typing.js";
import "./presence.js";
import { decorate } from "./viewer.js";
import "./toasts.js";
import "./notifications.js";
import "./push.js";
import { scrollToUnread } from "./scroll.js";
import { renewClientId, startComposer } from "./composer.js";
import "./attachments.js";
import "./mentions.js";
import "./private.js";
import "./confirm.js";
import "./reactions.js";
import { showTarget } from "./jump.js";

document.addEventListener("DOMContentLoaded", () => {
  renewClientId();
  decorate(document);
  // A link to one message (/r/12/m/7/, or #m-42) shows that message; otherwise the newest,
  // ready to answer (or where the unread messages start, when they are more than a screen).
  const linked = showTarget() || Boolean(location.hash);
  if (!linked) scrollToUnread();
  startComposer({ focus: !linked });
});
