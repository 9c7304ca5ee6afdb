// An image for the composer: picked with the image button, pasted into the composer or
// dropped anywhere on a room page. It shows as a thumbnail with its name and Remove, or
// with why a file was not taken.
import { composerTextarea } from "./composer.js";

const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"];

let thumbnailUrl = null;

function composerFileInput() {
  return document.querySelector('#composer input[type="file"]');
}

function showAttachment(input, problem) {
  const label = input.closest(".composer__attach");
  const file = input.files && input.files[0];
  label.classList.toggle("has-file", Boolean(file));
  label.title = file ? "Attached: " + file.name + " (click to change)" : "Attach an image";
  let note = document.getElementById("composer-file-name");
  if (!note) {
    note = document.createElement("div");
    note.id = "composer-file-name";
    note.className = "composer__file-name";
    const composer = input.closest("#composer");
    composer.insertBefore(note, composer.querySelector(".composer__hint"));
  }
  if (thumbnailUrl) URL.revokeObjectURL(thumbnailUrl);
  thumbnailUrl = null;
  const parts = [];
  if (file) {
    thumbnailUrl = URL.createObjectURL(file);
    const thumbnail = document.createElement("img");
    thumbnail.src = thumbnailUrl;
    thumbnail.alt = "";
    const name = document.createElement("span");
    name.textContent = "Image: " + file.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "composer__file-remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => {
      input.value = "";
      showAttachment(input, "");
      input.closest("#composer").querySelector("textarea")?.focus();
    });
    parts.push(thumbnail, name, remove);
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

document.addEventListener("input", (event) => {
  const target = event.target;
  if (target instanceof HTMLInputElement && target.type === "file" && target.closest("#composer")) {
    showAttachment(target, "");
  }
});

// Pasted or dropped images go into the composer's file input, as if picked with the image button.
function attach(files) {
  const input = composerFileInput();
  if (!input || !files.length) return;
  const image = files.find((file) => IMAGE_TYPES.includes(file.type));
  if (!image) {
    showAttachment(input, "Only images can be attached (JPEG, PNG, WebP or GIF).");
    return;
  }
  const transfer = new DataTransfer();
  transfer.items.add(image);
  input.files = transfer.files;
  showAttachment(input, files.length > 1 ? "One image per message: " + image.name + " is attached." : "");
}

// One line naming an image file, perhaps with its folder ("Screenshot 12.png", "/home/a/b.jpg").
const IMAGE_FILE_NAME = /^[^\r\n]*\.(png|jpe?g|gif|webp|bmp|avif|heic|heif|tiff?)$/i;

// HTML holding one picture and no text: what a browser's "Copy image" puts beside the image.
function isImageAlone(html) {
  const body = new DOMParser().parseFromString(html, "text/html").body;
  return body.querySelectorAll("img").length === 1 && !body.textContent.trim();
}

// Text copied from a document may come with a picture of itself: then the text is meant.
// Some sources add a copied picture's file name or alt text as text: then the picture is.
function pasteMeansImage(clipboard) {
  if (!clipboard.types.includes("text/plain")) return true;
  const html = clipboard.types.includes("text/html") ? clipboard.getData("text/html") : "";
  if (html && isImageAlone(html)) return true;
  return IMAGE_FILE_NAME.test(clipboard.getData("text/plain").trim());
}

document.addEventListener("paste", (event) => {
  const target = event.target;
  if (!(target instanceof Element) || !target.closest("#composer") || !event.clipboardData) return;
  const files = Array.from(event.clipboardData.files || []);
  if (!files.length || !pasteMeansImage(event.clipboardData)) return;
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
