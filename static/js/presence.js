// Who is online: the green dot on avatars (facepile, sidebar) follows presence frames.
import { onFrame } from "./live.js";
import { gettext } from "./i18n.js";

function mark(user, online) {
  document.querySelectorAll('[data-presence-user="' + user + '"]').forEach((el) => {
    el.classList.toggle("is-online", online);
    const dot = el.querySelector(".presence__dot");
    if (dot) dot.title = online ? gettext("Online") : gettext("Offline");
  });
}

onFrame("presence", (frame) => {
  frame.online.forEach((user) => mark(user, true));
  frame.offline.forEach((user) => mark(user, false));
});
