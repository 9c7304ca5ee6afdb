// The room list beside the pane: new activity moves a room to the top, a room I left
// goes, and after a lost connection the whole list is fetched again.
import { onFrame, onReconnect } from "./live.js";
import { updateTitle } from "./unread.js";

onReconnect(() => {
  // The room marked in the sidebar: this page's, or the one whose settings it shows.
  const current = document.querySelector('#sidebar [aria-current="page"]')?.closest("li")?.dataset.roomId;
  const url = "/rooms/sidebar/" + (current ? "?room=" + current : "");
  htmx.ajax("GET", url, { target: "#sidebar", swap: "outerHTML" }).then(updateTitle);
});

onFrame("room_removed", (frame) => {
  document.getElementById("sidebar-entry-" + frame.room)?.remove();
  updateTitle();
});

document.body.addEventListener("htmx:oobAfterSwap", (event) => {
  const target = event.detail.target;
  if (!target || !target.id || !target.id.startsWith("sidebar-preview-")) return;
  // New activity moves the room to the top of the list. The target was replaced
  // (an outerHTML swap), so look up the element now in its place.
  const el = document.getElementById(target.id);
  const entry = el && el.closest("li");
  const list = document.getElementById("room-list");
  // Pinned rooms (my assistant) keep their place above the list.
  if (entry && list && entry.parentElement === list && list.firstElementChild !== entry) list.prepend(entry);
});
