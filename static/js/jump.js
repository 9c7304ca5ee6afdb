// A room page showing an older window of its history rather than its latest messages: a
// link to one message (/r/<room>/m/<seq>/, from search, a toast, a notification or a
// reply's quote), or older history opened without a script (?before=). The linked message
// is highlighted and in view; newer messages load as the reader reaches the window's end;
// live messages are not added after it (they would leave a gap) but light up "Jump to
// latest" instead, until the window reaches the latest messages and the page is an
// ordinary room page again. Reply quotes scroll to their original when it is on the page.
import { me } from "./dom.js";
import { knownSeqs } from "./messages.js";
import { resume } from "./live.js";

// A message was sent from this page (by htmx, or by attachments.js with a file).
let sent = false;

function messageList() {
  return document.getElementById("messages");
}

/** Whether the page shows an older window (#messages[data-detached]). */
export function detached() {
  const list = messageList();
  return Boolean(list && "detached" in list.dataset);
}

function bySeq(seq) {
  const list = messageList();
  return list && list.querySelector(':scope > [data-seq="' + Number(seq) + '"]');
}

function highlight(element) {
  document.querySelectorAll("#messages > .is-target").forEach((el) => el.classList.remove("is-target"));
  element.classList.add("is-target");
  element.scrollIntoView({ block: "center" });
}

/** On load: show the message the page was opened for. True if it did. */
export function showTarget() {
  const list = messageList();
  const target = list && list.dataset.targetSeq && bySeq(list.dataset.targetSeq);
  if (!target) return false;
  highlight(target);
  return true;
}

function newestShown() {
  const seqs = knownSeqs();
  return seqs.length ? Math.max(...seqs) : 0;
}

// Live messages (pushed, or caught up) after the window are left out; the button says so.
document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
  if (event.detail.target.id !== "messages" || !detached()) return;
  const newest = newestShown();
  let held = 0;
  let mine = false;
  Array.from(event.detail.fragment.children).forEach((child) => {
    if (child.dataset && Number(child.dataset.seq) > newest) {
      mine = mine || (sent && child.dataset.authorId === me);
      child.remove();
      held++;
    }
  });
  // Sent from this window: the message is at the end of the room, so go there.
  if (mine) location.assign(latestUrl());
  const note = document.querySelector("#jump-latest .jump-latest__new");
  if (held && note) note.hidden = false;
});

function latestUrl() {
  const button = document.querySelector("#jump-latest a");
  return button ? button.href : location.pathname.replace(/m\/\d+\/$/, "");
}

document.body.addEventListener("htmx:beforeRequest", (event) => {
  if (detached() && event.detail.elt && event.detail.elt.id === "composer") sent = true;
});

// The last page of newer messages arrived (no "Load newer" link came with it): the window
// reaches the latest, so live messages are added again, after anything that came meanwhile.
document.body.addEventListener("htmx:afterSettle", () => {
  const list = messageList();
  if (!detached() || list.querySelector(":scope > .load-newer")) return;
  delete list.dataset.detached;
  const button = document.getElementById("jump-latest");
  if (button) button.remove();
  resume({ missedOnly: true });
});

// A reply's quote: its original, here if the page has it, else by its link.
document.addEventListener("click", (event) => {
  const quote = event.target.closest && event.target.closest(".message__quote[data-quote-seq]");
  if (!quote || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const original = bySeq(quote.dataset.quoteSeq);
  if (!original) return;
  event.preventDefault();
  highlight(original);
});
