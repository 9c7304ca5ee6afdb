// Calpico's own script: small touches on top of server-rendered pages and htmx.
(function () {
  "use strict";

  const me = document.body.dataset.userId;

  // Per-viewer marks on HTML that was rendered once for everyone.
  // Matches at `root` and below: htmx hands over a swapped message as `root` itself.
  function within(root, selector) {
    const found = Array.from(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.unshift(root);
    return found;
  }

  function decorate(root) {
    if (!root.querySelectorAll) return;
    if (me) {
      within(root, '.message[data-author-id="' + me + '"]').forEach((el) => el.classList.add("is-mine"));
      within(root, '.mention[data-user-id="' + me + '"]').forEach((el) => el.classList.add("mention--me"));
    }
    within(root, "time[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      const today = new Date().toDateString() === when.toDateString();
      el.textContent = today
        ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
        : when.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      el.title = when.toLocaleString();
    });
  }

  function history() {
    return document.getElementById("history");
  }

  function scrollToBottom() {
    const el = history();
    if (el) el.scrollTop = el.scrollHeight;
  }

  function fitComposer(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, 192) + "px";
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLTextAreaElement) || !target.closest("#composer")) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      target.form.requestSubmit();
    }
  });

  document.addEventListener("input", (event) => {
    if (event.target instanceof HTMLTextAreaElement && event.target.closest("#composer")) fitComposer(event.target);
  });

  document.addEventListener("htmx:load", (event) => decorate(event.detail.elt));

  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target && target.id === "composer") {
      // My own message was just added: show it, wherever I had scrolled to.
      if (event.detail.requestConfig && event.detail.requestConfig.verb === "post" && event.detail.successful) {
        scrollToBottom();
      }
      // The server answered a send, a reply choice or a refusal: keep typing.
      const textarea = document.querySelector("#composer textarea");
      if (textarea) {
        textarea.focus();
        textarea.setSelectionRange(textarea.value.length, textarea.value.length);
        fitComposer(textarea);
      }
    }
  });

  document.addEventListener("htmx:oobAfterSwap", (event) => {
    if (event.detail.target && event.detail.target.id === "messages") {
      document.querySelectorAll(".history__empty").forEach((el) => el.remove());
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    decorate(document);
    if (!location.hash) scrollToBottom();
    const textarea = document.querySelector("#composer textarea");
    if (textarea) {
      fitComposer(textarea);
      if (!location.hash) textarea.focus();
    }
  });
})();

// Forms that need a second thought (remove a member, leave a group).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// Flash messages fade after a while; they never hide anything for good.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".flash__item").forEach((item) => {
    item.addEventListener("click", () => item.remove());
    setTimeout(() => item.remove(), 6000);
  });
});

// The desktop-notification switch asks the browser's permission when it is switched on,
// never on page load.
document.addEventListener("change", async (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.id !== "desktop-notifications") return;
  const status = document.getElementById("desktop-permission");
  if (input.checked && "Notification" in window && Notification.permission !== "granted") {
    const answer = await Notification.requestPermission();
    if (answer !== "granted") {
      input.checked = false;
      status.textContent = "Your browser blocks notifications from this site; allow them in its site settings first.";
      return;
    }
  }
  input.form.requestSubmit();
});
