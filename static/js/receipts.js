// "Seen": under my latest message, whether the others have read that far. A direct room
// says "Seen"; a group shows the faces of who has ("Seen by …"). Drawn from the others' read
// positions, which the server gives this page only for people who share them, only if I share
// mine, and never for someone I blocked or who blocked me (docs/protocol.md, `seen`): on the
// page (#messages data-read-positions) and then live.
import { me } from "./dom.js";
import { onFrame, roomId } from "./live.js";
import { nearBottom, scrollToBottom } from "./scroll.js";
import { gettext, interpolate } from "./i18n.js";

const MAX_FACES = 5;
const list = document.getElementById("messages");
// "direct" or "group"; none in a private assistant room, where no one else reads.
const kind = list ? list.dataset.receipts : undefined;
/** user id (string) -> the seq they have read up to */
const positions = new Map();

function myLatestMessage() {
  const mine = list.querySelectorAll(
    ':scope > article.message[data-author-id="' + me + '"]:not(.message--deleted)',
  );
  return mine.length ? mine[mine.length - 1] : null;
}

function groupReceipt(readers) {
  // The faces in the members' order (#seen-faces holds each member's, rendered with the page).
  const faces = Array.from(document.querySelectorAll("#seen-faces [data-user-id]")).filter((face) =>
    readers.has(face.dataset.userId),
  );
  if (!faces.length) return null;
  const names = faces.map((face) => face.dataset.name).join(", ");
  const receipt = document.createElement("p");
  receipt.className = "seen seen--group";
  receipt.title = interpolate(gettext("Seen by %(names)s"), { names: names });
  const label = document.createElement("span");
  label.className = "visually-hidden";
  label.textContent = receipt.title;
  receipt.append(label);
  faces.slice(0, MAX_FACES).forEach((face) => {
    const copy = face.cloneNode(true);
    copy.setAttribute("aria-hidden", "true");
    receipt.append(copy);
  });
  if (faces.length > MAX_FACES) {
    const more = document.createElement("span");
    more.className = "seen__more";
    more.setAttribute("aria-hidden", "true");
    more.textContent = "+" + (faces.length - MAX_FACES);
    receipt.append(more);
  }
  return receipt;
}

function receiptFor(readers) {
  if (kind === "group") return groupReceipt(readers);
  const receipt = document.createElement("p");
  receipt.className = "seen";
  receipt.textContent = gettext("Seen");
  return receipt;
}

/** Draw "Seen" under my latest message, or take it away; nothing changes if nothing would. */
export function showSeen() {
  if (!list || !kind || !me) return;
  const message = myLatestMessage();
  const seq = message ? Number(message.dataset.seq) : 0;
  const readers = new Set();
  if (message) {
    positions.forEach((read, user) => {
      if (read >= seq && user !== me) readers.add(user);
    });
  }
  const key = seq + ":" + Array.from(readers).sort().join(",");
  const current = list.querySelector(".seen");
  if (current && current.dataset.key === key && message && message.contains(current)) return;
  const following = nearBottom();
  if (current) current.remove();
  const receipt = readers.size ? receiptFor(readers) : null;
  if (receipt) {
    receipt.dataset.key = key;
    message.querySelector(".message__main").append(receipt);
  }
  if (following) scrollToBottom();
}

if (list && kind) {
  (list.dataset.readPositions || "")
    .split(" ")
    .filter(Boolean)
    .forEach((pair) => {
      const [user, seq] = pair.split(":");
      positions.set(user, Number(seq));
    });
  list.addEventListener("messages:changed", showSeen);
  showSeen();
}

onFrame("seen", (frame) => {
  if (!list || !kind || frame.room !== roomId) return;
  if (frame.replace) positions.clear();
  Object.entries(frame.positions).forEach(([user, seq]) => {
    if (seq === null) positions.delete(user);
    else positions.set(user, Math.max(seq, positions.get(user) || 0));
  });
  showSeen();
});
