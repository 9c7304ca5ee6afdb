// Per-viewer marks on HTML that was rendered once for everyone (pages and live pushes
// alike): my own messages, mentions of me, my presence, messages from people I blocked,
// and times in the viewer's own time zone. docs/architecture.md: "Per-viewer differences".
import { me, within } from "./dom.js";
import { onFrame } from "./live.js";
import { gettext, language } from "./i18n.js";

function blockedAuthors() {
  const list = document.getElementById("messages");
  return new Set(((list && list.dataset.blocked) || "").split(",").filter(Boolean));
}

// Messages from people I blocked are collapsed; a click shows one.
function collapseBlocked(root) {
  const blocked = blockedAuthors();
  within(root, ".message[data-author-id]").forEach((el) => {
    const isBlocked = blocked.has(el.dataset.authorId);
    el.classList.toggle("is-blocked", isBlocked);
    if (isBlocked && !el.querySelector(".blocked-notice")) {
      const notice = document.createElement("button");
      notice.type = "button";
      notice.className = "blocked-notice";
      notice.textContent = gettext("Message from a blocked account · show");
      notice.addEventListener("click", () => el.classList.add("is-revealed"));
      el.prepend(notice);
    }
  });
}

function localTimes(root) {
  within(root, "time[datetime]").forEach((el) => {
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) return;
    const today = new Date().toDateString() === when.toDateString();
    el.textContent = today
      ? when.toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit" })
      : when.toLocaleString(language, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    el.title = when.toLocaleString(language, { dateStyle: "long", timeStyle: "short" });
  });
}

/** Mark everything at `root` and below for this viewer. */
export function decorate(root) {
  if (!root.querySelectorAll) return;
  collapseBlocked(root);
  if (me) {
    // Pushed fragments are rendered for everyone: I am online, and I don't mention myself.
    within(root, '[data-presence-user="' + me + '"]').forEach((el) => el.classList.add("is-online"));
    within(root, '#mention-candidates li[data-user-id="' + me + '"]').forEach((el) => el.remove());
    within(root, '.message[data-author-id="' + me + '"]').forEach((el) => el.classList.add("is-mine"));
    within(root, '.mention[data-user-id="' + me + '"]').forEach((el) => el.classList.add("mention--me"));
  }
  localTimes(root);
}

document.addEventListener("htmx:load", (event) => decorate(event.detail.elt));

// I blocked or unblocked someone (on this page or another one).
onFrame("blocked", (frame) => {
  const list = document.getElementById("messages");
  if (!list) return;
  list.dataset.blocked = frame.users.join(",");
  collapseBlocked(document);
});

// The server writes some dates into pages itself (a profile's "Member since", an export's
// times): it remembers this browser's time zone for them, told once when it differs.
function rememberTimeZone() {
  const body = document.body;
  const url = body.dataset.timeZoneUrl;
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return;
  }
  if (!url || !zone || body.dataset.timeZone === zone) return;
  let token = "";
  try {
    token = JSON.parse(body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return;
  }
  body.dataset.timeZone = zone;
  fetch(url, {
    method: "POST",
    headers: { "X-CSRFToken": token },
    body: new URLSearchParams({ time_zone: zone }),
    credentials: "same-origin",
  }).catch(() => {
    body.dataset.timeZone = "";
  });
}

rememberTimeZone();
