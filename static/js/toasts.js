// Flash messages (from the server, after a form) and toasts (live, from other rooms)
// show for a while and go; they never hide anything for good.
import { pageVisible } from "./dom.js";
import { roomId } from "./live.js";
import { notifyDesktop } from "./notifications.js";

const SHOWN_FOR = 6000; // ms

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".flash__item").forEach((item) => {
    item.addEventListener("click", () => item.remove());
    setTimeout(() => item.remove(), SHOWN_FOR);
  });
});

function showToast(toast) {
  toast.dataset.shown = "yes";
  // A quiet toast (someone reacted to my message) never becomes a desktop notification.
  if (!pageVisible() && !("quiet" in toast.dataset)) notifyDesktop(toast);
  if (Number(toast.dataset.roomId) === roomId && pageVisible()) {
    toast.remove(); // the message is right there on the screen
    return;
  }
  setTimeout(() => toast.remove(), SHOWN_FOR);
}

document.addEventListener("htmx:wsAfterMessage", () => {
  document.querySelectorAll("#toasts > .toast:not([data-shown])").forEach(showToast);
});
