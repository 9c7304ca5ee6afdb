// The composer: it grows with its text, Enter sends, text typed while a send is on its way
// is kept, and each showing of the page gets a fresh client_id. Files (attachments.js) and
// @-mentions (mentions.js) have modules of their own.
import { scrollToBottom } from "./scroll.js";

const MAX_HEIGHT = 192; // px; the textarea scrolls beyond this (calpico.css: max-height 12rem)

export function composerTextarea() {
  return document.querySelector("#composer textarea");
}

export function isComposerTextarea(element) {
  return element instanceof HTMLTextAreaElement && element.closest("#composer") !== null;
}

function fit(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = Math.min(textarea.scrollHeight, MAX_HEIGHT) + "px";
}

/** Ready the composer on a page that was just shown; `focus` unless the page opened on a linked message. */
export function startComposer({ focus }) {
  const textarea = composerTextarea();
  if (!textarea) return;
  fit(textarea);
  if (focus) textarea.focus();
}

// Enter sends, Shift+Enter starts a new line; nothing happens while an input method composes.
document.addEventListener("keydown", (event) => {
  if (!isComposerTextarea(event.target)) return;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    // One send at a time: while a file uploads (attachments.js), Enter does not send the
    // form again. Not htmx's own "htmx-request" class: the composer that replaces the one
    // just sent can still carry it for a moment, and the next message's Enter was lost.
    // The composer form holds the textarea (an encrypted room's textarea belongs to no
    // form, so that nothing sends its text unencrypted: static/js/e2ee.js sends it).
    const form = event.target.closest("#composer");
    if (!form.classList.contains("is-uploading")) form.requestSubmit();
  }
});

document.addEventListener("input", (event) => {
  if (isComposerTextarea(event.target)) fit(event.target);
});

// A send of a large file takes a while, and people keep typing meanwhile. What the textarea
// held when it was sent and when the answer came: the fresh composer keeps what was typed
// since (after a refusal, all of it), not only the text the server echoes back.
let sentText = null;
let typedText = null;

document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (elt && elt.id === "composer" && event.detail.requestConfig?.verb === "post") {
    sentText = composerTextarea()?.value ?? null;
  }
});

/** Note what the textarea holds now, just before the composer is replaced by the server's answer. */
export function rememberTyped() {
  typedText = composerTextarea()?.value ?? null;
}

document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.target && event.detail.target.id === "composer") rememberTyped();
});

function keepTyped(textarea, refused) {
  const sent = sentText;
  const typed = typedText;
  sentText = typedText = null;
  if (sent === null || typed === null) return;
  // Refused: everything typed, also when the server could not echo it (an encrypted room's
  // text is never sent unencrypted).
  if (refused) textarea.value = typed;
  else if (typed !== sent) textarea.value = typed.startsWith(sent) ? typed.slice(sent.length).replace(/^\s+/, "") : typed;
}

/**
 * Ready the composer for the next message after a send went through: the server answers
 * with the message only and leaves the composer in place (HX-Reswap: none), so the page
 * does what a fresh composer from the server did: no text, no reply, no errors, no file
 * (attachments.js), no mention menu (mentions.js), and the next client_id.
 */
function resetComposer(form) {
  const textarea = composerTextarea();
  if (textarea) textarea.value = "";
  const replyTo = form.querySelector('input[name="reply_to"]');
  if (replyTo) replyTo.value = "";
  form.querySelectorAll(".composer__reply, .composer__error").forEach((element) => element.remove());
  renewClientId();
  form.dispatchEvent(new CustomEvent("composer:reset", { bubbles: true }));
}

// The server leaves the composer in place after a send only for a page that says it resets
// it itself (resetComposer): a page loaded before that (open across a deploy) gets a fresh
// composer in the answer, as it always did, or it would keep the text and the used client_id.
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.elt?.id === "composer" && event.detail.verb === "post") event.detail.headers["Calpico-Composer"] = "resets";
});

document.addEventListener("htmx:afterSwap", (event) => {
  const target = event.detail.target;
  if (!target || target.id !== "composer") return;
  const posted = event.detail.requestConfig && event.detail.requestConfig.verb === "post";
  const refused = event.detail.xhr && event.detail.xhr.status === 422;
  const kept = posted && !refused && event.detail.xhr?.getResponseHeader("HX-Reswap") === "none";
  if (kept) resetComposer(target);
  // My own message was just added: show it, wherever I had scrolled to.
  if (posted && event.detail.successful && !refused) {
    scrollToBottom();
  }
  // The server answered a send, a reply choice or a refusal: keep typing.
  const textarea = composerTextarea();
  if (textarea && posted) keepTyped(textarea, refused);
  if (textarea) {
    textarea.focus();
    textarea.setSelectionRange(textarea.value.length, textarea.value.length);
    fit(textarea);
  }
});

// The composer's client_id makes a resent message one message. A page the browser
// brings back (Back button: the HTML from its cache, a restored form or the
// back-forward cache) would hold the id of a message it already sent, so every showing
// of the page takes a fresh one, and so does the composer after each send (resetComposer).
function freshId() {
  if (window.crypto.randomUUID) return window.crypto.randomUUID(); // secure contexts only
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
}

export function renewClientId() {
  const input = document.querySelector('#composer input[name="client_id"]');
  if (input) input.value = freshId();
}

window.addEventListener("pageshow", (event) => {
  if (event.persisted) renewClientId();
});
