// The message list (#messages): messages arrive by the post's answer and by live pushes,
// possibly both and possibly out of order; each shows once, in sequence order, and the
// pane follows them while the reader is at the bottom. Whatever changes the list, the
// list is sent "messages:changed" (grouping.js and receipts.js draw on it).
import { nearBottom, scrollToBottom } from "./scroll.js";

function messageList() {
  return document.getElementById("messages");
}

/** The sequence numbers of the messages on the page. */
export function knownSeqs() {
  const list = messageList();
  if (!list) return [];
  return Array.from(list.querySelectorAll(":scope > [data-seq]"), (el) => Number(el.dataset.seq));
}

function orderBySeq(list) {
  // Insertion sort from the end: at most a few elements are ever out of place.
  const items = Array.from(list.querySelectorAll(":scope > [data-seq]"));
  for (let i = items.length - 1; i > 0; i--) {
    const item = items[i];
    let j = i - 1;
    while (j >= 0 && Number(items[j].dataset.seq) > Number(item.dataset.seq)) j--;
    if (j < i - 1) {
      items[j + 1].before(item);
      items.splice(i, 1);
      items.splice(j + 1, 0, item);
      i++;
    }
  }
}

// A message (or sidebar entry) already on the page, e.g. my own message that the post
// response already showed, is not added twice.
document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
  const target = event.detail.target;
  if (target.id !== "messages" && target.id !== "room-list") return;
  Array.from(event.detail.fragment.children).forEach((child) => {
    if (child.id && document.getElementById(child.id)) child.remove();
  });
});

let changePending = false;

function listChanged() {
  changePending = false;
  const list = messageList();
  if (list) list.dispatchEvent(new CustomEvent("messages:changed"));
}

document.body.addEventListener("htmx:oobAfterSwap", (event) => {
  const target = event.detail.target;
  if (!target || target.id !== "messages") return;
  orderBySeq(target);
  document.querySelectorAll(".history__empty").forEach((el) => el.remove());
  // At once, before the pane follows the new message (htmx:wsAfterMessage).
  listChanged();
});

// Anything else swapped into the list (older history, an edit, a message replaced by a
// push): once for all the elements of one swap.
document.addEventListener("htmx:load", (event) => {
  const list = messageList();
  if (!list || changePending || !list.contains(event.detail.elt) || event.detail.elt === list) return;
  changePending = true;
  queueMicrotask(listChanged);
});

document.addEventListener("htmx:wsAfterMessage", () => {
  if (messageList() && nearBottom()) scrollToBottom();
});
