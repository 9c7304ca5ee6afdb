// "Alice is typing…": shown from others' typing frames, announced (at most every 3 s) while I type.
import { onFrame, roomId, send } from "./live.js";
import { gettext, interpolate } from "./i18n.js";

const ANNOUNCE_EVERY = 3000; // ms

const typists = new Map(); // user id -> { name, timer }
let lastTyping = 0;

function showTyping() {
  const line = document.getElementById("typing");
  if (!line) return;
  const names = Array.from(typists.values(), (t) => t.name);
  if (!names.length) line.textContent = "";
  else if (names.length === 1) line.textContent = interpolate(gettext("%(name)s is typing…"), { name: names[0] });
  else if (names.length === 2) line.textContent = interpolate(gettext("%(first)s and %(second)s are typing…"), {
      first: names[0],
      second: names[1],
    });
  else line.textContent = gettext("Several people are typing…");
}

onFrame("typing", (frame) => {
  if (frame.room !== roomId) return;
  clearTimeout(typists.get(frame.user)?.timer);
  const timer = setTimeout(() => {
    typists.delete(frame.user);
    showTyping();
  }, frame.seconds * 1000);
  typists.set(frame.user, { name: frame.name, timer });
  showTyping();
});

// Their message arrived: they are no longer typing it.
document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
  const target = event.detail.target;
  if (target.id !== "messages" && target.id !== "room-list") return;
  Array.from(event.detail.fragment.children).forEach((child) => {
    const author = Number(child.dataset && child.dataset.authorId);
    if (author && typists.has(author)) {
      clearTimeout(typists.get(author).timer);
      typists.delete(author);
      showTyping();
    }
  });
});

document.addEventListener("input", (event) => {
  if (!roomId || !event.target.closest || !event.target.closest("#composer")) return;
  const now = Date.now();
  if (now - lastTyping < ANNOUNCE_EVERY) return;
  lastTyping = now;
  send({ type: "typing", room: roomId });
});

// Sending ends the typing; the next keystroke announces a new message at once.
document.addEventListener("submit", (event) => {
  if (event.target.id === "composer") lastTyping = 0;
});
