// Consecutive messages from one person a few minutes apart share one header: the later ones
// (.message--continued) show no avatar or name, and their time on hover. rooms/grouping.py
// has the rule and lays pages out with it; here it is applied again wherever the list
// changes (messages pushed live, a page of older history meeting the one below it, a message
// replaced by an edit), with days in the viewer's own time zone. A system message, the
// "New messages" line or a message being edited ends a group.
const list = document.getElementById("messages");
const windowMs = list ? Number(list.dataset.groupSeconds || 300) * 1000 : 0;

function sentAt(message) {
  const time = message.querySelector(":scope > .message__main > .message__meta > time[datetime]");
  const when = time ? new Date(time.getAttribute("datetime")) : null;
  return when && !isNaN(when) ? when : null;
}

/** Whether `message` goes under the header of `previous`, the element before it in the list. */
function continues(previous, message) {
  if (!previous || !previous.matches("article.message")) return false;
  const author = message.dataset.authorId;
  // The assistant's messages have no author id: each keeps its name and AI badge.
  if (!author || author !== previous.dataset.authorId) return false;
  const before = sentAt(previous);
  const at = sentAt(message);
  if (!before || !at) return false;
  const gap = at - before;
  return gap >= 0 && gap <= windowMs && before.toDateString() === at.toDateString();
}

/** Mark every message in the list that continues the group above it. */
export function regroup() {
  if (!list) return;
  let previous = null;
  for (const item of list.children) {
    if (item.matches("article.message")) {
      const continued = continues(previous, item);
      if (item.classList.contains("message--continued") !== continued) {
        item.classList.toggle("message--continued", continued);
      }
    }
    previous = item;
  }
}

if (list) {
  list.addEventListener("messages:changed", regroup);
  regroup();
}
