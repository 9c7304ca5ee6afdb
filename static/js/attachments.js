// A file for the composer: picked with the paperclip button, pasted into the composer or
// dropped anywhere on a room page. It shows under the text (a thumbnail for a picture, an
// icon, name and size for any other file) with Remove, or with why it was not taken: the
// page refuses an empty file or one over the server's limit (data-max-bytes on the input)
// before sending anything, with the server's own words. A large file shows a progress bar
// while it uploads, with Cancel; a send that fails or is refused keeps the text and the file.
import { composerTextarea, rememberTyped } from "./composer.js";
import { gettext, ngettext, interpolate, language } from "./i18n.js";

const PICTURE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"];
// Smaller files upload in a blink: no bar for them.
const PROGRESS_FROM_BYTES = 512 * 1024;

let thumbnailUrl = null;

function composerFileInput() {
  return document.querySelector('#composer input[type="file"]');
}

/** Bytes as Django's filesizeformat writes them ("25.0 MB"), so page and server say the same. */
export function describeSize(bytes) {
  const units = ["KB", "MB", "GB", "TB"];
  if (bytes < 1024) return interpolate(ngettext("%(count)s byte", "%(count)s bytes", bytes), { count: bytes });
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return value.toLocaleString(language, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + "\u00a0" + units[unit];
}

/** Why the server would refuse this file, in its words, or "". */
function refusal(input, file) {
  const limit = Number(input.dataset.maxBytes || 0);
  if (file.size === 0) return interpolate(gettext("%(name)s is empty; there is nothing to send."), { name: file.name });
  if (limit && file.size > limit) {
    return interpolate(gettext("%(name)s is %(size)s; files can be at most %(limit)s."), {
      name: file.name,
      size: describeSize(file.size),
      limit: describeSize(limit),
    });
  }
  return "";
}

function fileIcon(file) {
  const icon = document.createElement("span");
  icon.className = "composer__file-icon";
  icon.setAttribute("aria-hidden", "true");
  const dot = file.name.lastIndexOf(".");
  const extension = dot > 0 ? file.name.slice(dot + 1) : "";
  icon.textContent = /^[a-z0-9]{1,4}$/i.test(extension) ? extension.toUpperCase() : "FILE";
  return icon;
}

function noteElement(input) {
  let note = document.getElementById("composer-file-name");
  if (!note) {
    note = document.createElement("div");
    note.id = "composer-file-name";
    note.className = "composer__file-name";
    const composer = input.closest("#composer");
    composer.insertBefore(note, composer.querySelector(".composer__hint"));
  }
  return note;
}

function showAttachment(input, problem) {
  const label = input.closest(".composer__attach");
  const file = input.files && input.files[0];
  label.classList.toggle("has-file", Boolean(file));
  label.title = file
    ? interpolate(gettext("Attached: %(name)s (click to change)"), { name: file.name })
    : gettext("Attach a file");
  const note = noteElement(input);
  if (thumbnailUrl) URL.revokeObjectURL(thumbnailUrl);
  thumbnailUrl = null;
  const parts = [];
  if (file) {
    if (PICTURE_TYPES.includes(file.type)) {
      thumbnailUrl = URL.createObjectURL(file);
      const thumbnail = document.createElement("img");
      thumbnail.src = thumbnailUrl;
      thumbnail.alt = "";
      parts.push(thumbnail);
    } else {
      parts.push(fileIcon(file));
    }
    const name = document.createElement("span");
    name.className = "composer__file-label";
    name.textContent = file.name + " (" + describeSize(file.size) + ")";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "composer__file-remove";
    remove.textContent = gettext("Remove");
    remove.addEventListener("click", () => {
      input.value = "";
      showAttachment(input, "");
      input.closest("#composer").querySelector("textarea")?.focus();
    });
    parts.push(name, remove);
  }
  if (problem) {
    const error = document.createElement("span");
    error.className = "composer__file-error";
    error.setAttribute("role", "alert");
    error.textContent = problem;
    parts.push(error);
  }
  note.replaceChildren(...parts);
}

// The message went out with its file (composer.js): the composer is empty again.
document.addEventListener("composer:reset", () => {
  const input = composerFileInput();
  if (!input) return;
  input.value = "";
  showAttachment(input, "");
  document.getElementById("composer-file-name")?.remove();
});

/** Put `file` in the composer's input, unless the server would refuse it: then say why. */
function take(input, file, note) {
  const problem = refusal(input, file);
  if (problem) {
    input.value = "";
    showAttachment(input, problem);
    return;
  }
  const transfer = new DataTransfer();
  transfer.items.add(file);
  input.files = transfer.files;
  showAttachment(input, note || "");
}

document.addEventListener("input", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLInputElement) || target.type !== "file" || !target.closest("#composer")) return;
  const file = target.files && target.files[0];
  const problem = file ? refusal(target, file) : "";
  if (problem) target.value = "";
  showAttachment(target, problem);
});

// Pasted or dropped files go into the composer's file input, as if picked with the button.
function attach(files) {
  const input = composerFileInput();
  if (!input || !files.length) return;
  const [file] = files;
  take(input, file, files.length > 1 ? interpolate(gettext("One file per message: %(name)s is attached."), { name: file.name }) : "");
}

// One line naming an image file, perhaps with its folder ("Screenshot 12.png", "/home/a/b.jpg").
const IMAGE_FILE_NAME = /^[^\r\n]*\.(png|jpe?g|gif|webp|bmp|avif|heic|heif|tiff?)$/i;

// HTML holding one picture and no text: what a browser's "Copy image" puts beside the image.
function isImageAlone(html) {
  const body = new DOMParser().parseFromString(html, "text/html").body;
  return body.querySelectorAll("img").length === 1 && !body.textContent.trim();
}

// Text copied from a document may come with a picture of itself: then the text is meant.
// Some sources add a copied file's name (or path) or a picture's alt text as text: then the file is.
function pasteMeansFile(clipboard, files) {
  if (!clipboard.types.includes("text/plain")) return true;
  const html = clipboard.types.includes("text/html") ? clipboard.getData("text/html") : "";
  if (html && isImageAlone(html)) return true;
  const text = clipboard.getData("text/plain").trim();
  const names = files.map((file) => file.name);
  return IMAGE_FILE_NAME.test(text) || names.some((name) => text === name || text.endsWith("/" + name));
}

document.addEventListener("paste", (event) => {
  const target = event.target;
  if (!(target instanceof Element) || !target.closest("#composer") || !event.clipboardData) return;
  const files = Array.from(event.clipboardData.files || []);
  if (!files.length || !pasteMeansFile(event.clipboardData, files)) return;
  event.preventDefault();
  attach(files);
});

function carriesFiles(event) {
  return Boolean(event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files") && composerFileInput());
}

function markDropTarget(on) {
  document.getElementById("composer")?.classList.toggle("is-drop-target", on);
}

// Dropped anywhere on a room page (not only on the composer): a file let go beside it
// would otherwise make the browser leave the page to show the file.
["dragenter", "dragover"].forEach((type) =>
  document.addEventListener(type, (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    markDropTarget(true);
  })
);

document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) markDropTarget(false); // left the window
});

document.addEventListener("drop", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  markDropTarget(false);
  attach(Array.from(event.dataTransfer.files));
  composerTextarea()?.focus();
});

// Sending. A message with a file goes by this module's own request instead of htmx's: the
// request htmx would make (the form as multipart, htmx's headers and the page's CSRF token),
// with upload progress and a Cancel that stops it quietly (htmx logs an aborted request as
// an error). htmx itself swaps the answer in (htmx.swap, out-of-band parts included), so
// the rest of the page sees what it sees after any send.

function isComposerPost(event) {
  const elt = event.detail && event.detail.elt;
  return Boolean(elt && elt.id === "composer" && event.detail.requestConfig?.verb === "post");
}

function showProgress(input, file, xhr) {
  const note = noteElement(input);
  const bar = document.createElement("progress");
  bar.className = "composer__progress";
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", interpolate(gettext("Uploading %(name)s"), { name: file.name }));
  const status = document.createElement("span");
  status.className = "composer__progress-status";
  status.setAttribute("role", "status");
  status.textContent = interpolate(gettext("Uploading %(name)s…"), { name: file.name });
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "composer__file-remove";
  cancel.textContent = gettext("Cancel");
  cancel.addEventListener("click", () => xhr.abort());
  note.replaceChildren(bar, status, cancel);
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    const percent = Math.floor((event.loaded / event.total) * 100);
    bar.value = percent;
    status.textContent =
      percent < 100
        ? interpolate(gettext("Uploading %(name)s… %(percent)s of %(size)s"), {
            name: file.name,
            percent: new Intl.NumberFormat(language, { style: "percent" }).format(percent / 100),
            size: describeSize(file.size),
          })
        : interpolate(gettext("Uploaded %(name)s, sending…"), { name: file.name });
  });
}

function failed(message) {
  const input = composerFileInput();
  if (input) showAttachment(input, message);
}

function answerFailed(status) {
  return status === 413
    ? gettext("That is too large for the server. Your message is still here.")
    : interpolate(gettext("Couldn't send (the server answered %(status)s). Your message is still here; try again."), {
        status: status,
      });
}

function sendWithFile(form, input, file, path, headers) {
  const xhr = new XMLHttpRequest();
  xhr.open("POST", path);
  Object.entries(headers).forEach(([name, value]) => {
    if (value !== null && value !== undefined) xhr.setRequestHeader(name, value);
  });
  const button = form.querySelector('button[type="submit"]');
  form.classList.add("is-uploading"); // composer.js: Enter does not send again meanwhile
  if (button) button.disabled = true;
  const settle = () => {
    form.classList.remove("is-uploading");
    if (button) button.disabled = false;
  };
  if (file.size >= PROGRESS_FROM_BYTES) showProgress(input, file, xhr);
  xhr.addEventListener("load", () => {
    settle();
    if (xhr.status !== 200 && xhr.status !== 422) {
      failed(answerFailed(xhr.status));
      return;
    }
    rememberTyped();
    const eventInfo = { xhr, target: form, requestConfig: { verb: "post" }, successful: true };
    // A message sent leaves the composer in place (HX-Reswap: none; composer.js resets it).
    const swapStyle = xhr.getResponseHeader("HX-Reswap") || "outerHTML";
    htmx.swap(form, xhr.responseText, { swapStyle }, { eventInfo, contextElement: form });
    // Refused for something else (a rate limit, text too long): the file goes back in.
    const composer = document.getElementById("composer");
    const fresh = composerFileInput();
    if (xhr.status === 422 && fresh && !composer.querySelector("[data-file-refused]")) take(fresh, file, "");
  });
  xhr.addEventListener("error", () => {
    settle();
    failed(gettext("Couldn't reach the server. Your message is still here; try again."));
  });
  xhr.addEventListener("abort", () => {
    settle();
    failed(gettext("Upload cancelled. Your message is still here."));
    composerTextarea()?.focus();
  });
  xhr.send(new FormData(form));
}

document.addEventListener("htmx:beforeRequest", (event) => {
  if (!isComposerPost(event)) return;
  const input = composerFileInput();
  const file = input && input.files && input.files[0];
  if (!file) return;
  event.preventDefault(); // htmx sends nothing; this module does
  const config = event.detail.requestConfig;
  sendWithFile(event.detail.elt, input, file, config.path, config.headers);
});

// A message without a file went by htmx; when it fails without an answer to show, say so
// (the composer stays as it was, with its text).
document.addEventListener("htmx:sendError", (event) => {
  if (isComposerPost(event)) failed(gettext("Couldn't reach the server. Your message is still here; try again."));
});
document.addEventListener("htmx:responseError", (event) => {
  if (isComposerPost(event)) failed(answerFailed(event.detail.xhr.status));
});
