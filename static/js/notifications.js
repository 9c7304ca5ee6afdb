// Desktop notifications: the switch in the notification settings asks the browser's
// permission when it is switched on (never on page load); toasts.js shows one for a
// toast while the tab is hidden.
import { gettext } from "./i18n.js";

document.addEventListener("change", async (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.id !== "desktop-notifications") return;
  const status = document.getElementById("desktop-permission");
  if (input.checked && "Notification" in window && Notification.permission !== "granted") {
    const answer = await Notification.requestPermission();
    if (answer !== "granted") {
      input.checked = false;
      status.textContent = gettext(
        "Your browser blocks notifications from this site; allow them in its site settings first.",
      );
      return;
    }
  }
  input.form.requestSubmit();
});

function allowed() {
  return document.body.dataset.desktopNotifications === "on" && "Notification" in window &&
    Notification.permission === "granted";
}

/** A desktop notification for a toast (a message, a mention, being added), if the person asked for them. */
export function notifyDesktop(toast) {
  if (!allowed()) return;
  const note = new Notification(toast.dataset.notifyTitle, {
    body: toast.dataset.notifyBody || "",
    tag: "calpico-room-" + toast.dataset.roomId,
    icon: "/static/favicon.svg",
  });
  note.onclick = () => {
    window.focus();
    location.href = toast.getAttribute("href");
  };
}
