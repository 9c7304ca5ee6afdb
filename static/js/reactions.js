// Reactions: the quick row on a hovered or focused message, "React" and a long press on touch
// screens, the searchable picker, and the per-viewer marks on chips (mine, people I blocked).
// The chips themselves are drawn by the server (templates/rooms/_reactions.html), the same
// HTML for every viewer, and arrive live as a `room.reactions` push (docs/protocol.md).
import { me, within } from "./dom.js";
import { onFrame } from "./live.js";
import { gettext, interpolate } from "./i18n.js";

// rooms/emoji.py's QUICK_REACTIONS, spelled as the data set spells them.
export const QUICK = [
  ["\u{1F44D}\uFE0F", "thumbs up"],
  ["\u2764\uFE0F", "red heart"],
  ["\u{1F602}", "face with tears of joy"],
  ["\u{1F62E}", "face with open mouth"],
  ["\u{1F622}", "crying face"],
  ["\u{1F64F}", "folded hands"],
];
// The vendored, pinned emojibase data set; rooms/emoji.py reads the same files.
const DATA_URL = new URL("../vendor/emojibase-data-17.0.0/en/compact.json", import.meta.url);
const VERSIONS_URL = new URL("../vendor/emojibase-data-17.0.0/versions/emoji.json", import.meta.url);
const MAX_VERSION = 15.0; // rooms/emoji.py PICKER_MAX_VERSION: newer ones are empty boxes on many devices
const GROUPS = {
  0: gettext("Smileys & emotion"), 1: gettext("People & body"), 3: gettext("Animals & nature"),
  4: gettext("Food & drink"), 5: gettext("Travel & places"), 6: gettext("Activities"), 7: gettext("Objects"),
  8: gettext("Symbols"), 9: gettext("Flags"),
};
const LONG_PRESS_MS = 500;

const hoverable = window.matchMedia("(hover: hover)");

// Per-viewer marks

function blockedIds() {
  const list = document.getElementById("messages");
  return new Set(((list && list.dataset.blocked) || "").split(",").filter(Boolean));
}

/** Mark the chips at `root` and below for this viewer: leave out people I blocked (their
 * names, and the chip if nobody else is left), count what remains, highlight mine and call
 * me "You". */
export function markReactions(root, blocked = blockedIds()) {
  if (!root.querySelectorAll) return;
  within(root, ".reaction[data-emoji]").forEach((chip) => {
    let count = 0;
    let mine = false;
    chip.querySelectorAll("[data-reactor]").forEach((who) => {
      const id = who.dataset.reactor;
      who.hidden = blocked.has(id);
      if (!who.hidden) count += 1;
      if (me && id === me) {
        mine = true;
        if (!who.dataset.name) who.dataset.name = who.textContent;
        who.textContent = gettext("You");
      }
    });
    chip.querySelector(".reaction__count").textContent = String(count);
    chip.classList.toggle("is-mine", mine);
    chip.setAttribute("aria-pressed", String(mine));
    chip.closest("form").hidden = count === 0;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  markReactions(document);
  addReactButtons(document);
});
document.addEventListener("htmx:load", (event) => {
  markReactions(event.detail.elt);
  addReactButtons(event.detail.elt);
});
onFrame("blocked", (frame) => markReactions(document, new Set(frame.users.map(String))));

// Chips that arrive out of order (two people reacting at once, or the answer to my click
// after a push of a later change) never replace newer ones.
function isOlder(incoming, current) {
  return Number(incoming.dataset.version || 0) < Number(current.dataset.version || 0);
}

document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
  const target = event.detail.target;
  const incoming = event.detail.fragment.firstElementChild;
  if (target.classList.contains("reactions") && incoming && isOlder(incoming, target)) {
    event.detail.shouldSwap = false;
  }
});

document.body.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  if (!target || !target.classList.contains("reactions")) return;
  const version = /data-version="(\d+)"/.exec(event.detail.serverResponse || "");
  if (version && Number(version[1]) < Number(target.dataset.version || 0)) event.detail.shouldSwap = false;
});

// Toggling

function reactionsOf(messageId) {
  return document.getElementById("m-" + messageId + "-reactions");
}

/** Add my `emoji` to the message, or take it back; the answer is the message's chips. */
function toggle(messageId, emoji) {
  const reactions = reactionsOf(messageId);
  if (!reactions) return;
  htmx.ajax("POST", reactions.dataset.reactUrl, {
    source: reactions,
    target: reactions,
    swap: "outerHTML",
    values: { emoji },
  });
}

function messageIdOf(element) {
  const message = element.closest(".message[id^='m-']");
  return message ? message.id.slice(2) : null;
}

function emojiButton(emoji, label, className) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = emoji;
  button.dataset.reactEmoji = emoji;
  button.title = label;
  button.setAttribute("aria-label", interpolate(gettext("React with %(emoji)s"), { emoji: label }));
  return button;
}

// The quick row: one element, moved into the actions of the message under the pointer or
// holding the focus.

let bar = null;

function quickBar() {
  if (bar) return bar;
  bar = document.createElement("span");
  bar.className = "react-bar";
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", gettext("React"));
  QUICK.forEach(([emoji, label]) => bar.append(emojiButton(emoji, label, "react-bar__emoji")));
  const more = document.createElement("button");
  more.type = "button";
  more.className = "react-bar__emoji react-bar__more";
  more.dataset.reactMore = "";
  more.title = gettext("More reactions");
  more.setAttribute("aria-label", gettext("More reactions"));
  more.setAttribute("aria-haspopup", "dialog");
  more.textContent = "+";
  bar.append(more);
  return bar;
}

function reactableMessage(element) {
  const message = element.closest && element.closest("#messages .message");
  return message && message.querySelector(":scope .reactions") ? message : null;
}

function showBar(message) {
  if (picker && !picker.hidden) return; // the row holds the picker's opener while it is open
  const actions = message.querySelector(":scope > .message__actions");
  if (!actions) return;
  const row = quickBar();
  if (row.parentElement !== actions) actions.prepend(row);
}

document.addEventListener("mouseover", (event) => {
  if (!hoverable.matches) return;
  const message = reactableMessage(event.target);
  if (message) showBar(message);
});
document.addEventListener("focusin", (event) => {
  const message = reactableMessage(event.target);
  if (message && hoverable.matches) showBar(message);
});

// Touch screens show every message's actions: there, a "React" button opens the picker.
function addReactButtons(root) {
  if (hoverable.matches || !root.querySelectorAll) return;
  within(root, "#messages .message").forEach((message) => {
    const actions = message.querySelector(":scope > .message__actions");
    if (!actions || !message.querySelector(".reactions") || actions.querySelector(".react-open")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "message__action react-open";
    button.dataset.reactMore = "";
    button.setAttribute("aria-haspopup", "dialog");
    button.textContent = gettext("React");
    actions.prepend(button);
  });
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof Element)) return;
  const quick = target.closest("[data-react-emoji]");
  if (quick) {
    const messageId = quick.closest("#emoji-picker") ? picking : messageIdOf(quick);
    if (messageId) toggle(messageId, quick.dataset.reactEmoji);
    if (quick.closest("#emoji-picker")) closePicker();
    return;
  }
  const more = target.closest("[data-react-more], .reaction--add");
  if (more && messageIdOf(more)) {
    event.preventDefault(); // "Add a reaction" is a link to the page without JavaScript
    openPicker(messageIdOf(more), more);
  }
});

// A long press on a message (touch) opens the picker, as in WhatsApp and Signal.
let press = null;

document.addEventListener("pointerdown", (event) => {
  if (event.pointerType !== "touch") return;
  const message = reactableMessage(event.target);
  if (!message || event.target.closest("a, button, input, textarea, .reactions")) return;
  const started = { message, x: event.clientX, y: event.clientY, fired: false, timer: 0 };
  started.timer = setTimeout(() => {
    started.fired = true;
    openPicker(message.id.slice(2), message);
  }, LONG_PRESS_MS);
  press = started;
});
document.addEventListener("pointermove", (event) => {
  if (press && Math.hypot(event.clientX - press.x, event.clientY - press.y) > 10) {
    clearTimeout(press.timer);
    press = null;
  }
});
["pointerup", "pointercancel"].forEach((type) =>
  document.addEventListener(type, () => {
    if (!press) return;
    clearTimeout(press.timer);
    const ended = press;
    // A press that opened the picker stays a moment, for the click it may still bring.
    if (ended.fired) setTimeout(() => press === ended && (press = null), 400);
    else press = null;
  }),
);
// The press that opened the picker does not also open the browser's menu or follow a link
// in the message.
document.addEventListener("contextmenu", (event) => {
  if (press && press.fired) event.preventDefault();
});
document.addEventListener(
  "click",
  (event) => {
    if (!press || !press.fired) return;
    if (press.message.contains(event.target)) {
      event.preventDefault();
      event.stopPropagation();
    }
    press = null;
  },
  true,
);

// The picker: one dialog for the page, the data set read once on its first opening.

let picker = null;
let picking = null; // the id of the message the picker reacts to
let opener = null;
let emojiList = null;

function loadEmoji() {
  if (!emojiList) {
    emojiList = Promise.all([fetch(DATA_URL), fetch(VERSIONS_URL)])
      .then((responses) => Promise.all(responses.map((response) => response.json())))
      .then(([data, versions]) => {
        const tooNew = new Set();
        Object.entries(versions).forEach(([version, codes]) => {
          if (Number(version) > MAX_VERSION) codes.forEach((code) => tooNew.add(code));
        });
        return data
          .filter((entry) => entry.group in GROUPS && !tooNew.has(entry.hexcode))
          .sort((a, b) => a.order - b.order)
          .map((entry) => ({
            unicode: entry.unicode,
            label: entry.label,
            group: entry.group,
            words: [...entry.label.toLowerCase().replace(/:/g, " ").split(/\s+/), ...(entry.tags || [])],
          }));
      })
      .catch((error) => {
        emojiList = null;
        throw error;
      });
  }
  return emojiList;
}

function buildPicker() {
  picker = document.createElement("div");
  picker.className = "emoji-picker";
  picker.id = "emoji-picker";
  picker.hidden = true;
  picker.setAttribute("role", "dialog");
  picker.setAttribute("aria-label", gettext("Add a reaction"));
  const quick = document.createElement("div");
  quick.className = "emoji-picker__quick";
  QUICK.forEach(([emoji, label]) => quick.append(emojiButton(emoji, label, "emoji-picker__emoji")));
  const search = document.createElement("input");
  search.type = "search";
  search.className = "emoji-picker__search";
  search.placeholder = gettext("Search emoji");
  search.setAttribute("aria-label", gettext("Search emoji"));
  search.setAttribute("aria-controls", "emoji-picker-grid");
  search.autocomplete = "off";
  const grid = document.createElement("div");
  grid.className = "emoji-picker__grid";
  grid.id = "emoji-picker-grid";
  grid.setAttribute("role", "group");
  grid.setAttribute("aria-label", gettext("Emoji"));
  grid.textContent = gettext("Loading…");
  const empty = document.createElement("p");
  empty.className = "emoji-picker__empty";
  empty.hidden = true;
  empty.textContent = gettext("No emoji found.");
  picker.append(quick, search, grid, empty);
  document.body.append(picker);

  search.addEventListener("input", () => filter(search.value));
  search.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      const first = visibleEmoji()[0];
      if (first) first.focus();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const first = visibleEmoji()[0];
      if (first) first.click();
    }
  });
  grid.addEventListener("keydown", moveInGrid);
  picker.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      closePicker();
    }
  });
  loadEmoji().then(fillGrid, () => {
    grid.textContent = gettext("The emoji could not be loaded. Try again later.");
  });
}

function fillGrid(list) {
  const grid = picker.querySelector(".emoji-picker__grid");
  grid.textContent = "";
  let section = null;
  let group = null;
  list.forEach((emoji) => {
    if (emoji.group !== group) {
      group = emoji.group;
      section = document.createElement("div");
      section.className = "emoji-picker__section";
      const heading = document.createElement("h3");
      heading.className = "emoji-picker__group";
      heading.textContent = GROUPS[group];
      section.append(heading);
      grid.append(section);
    }
    const button = emojiButton(emoji.unicode, emoji.label, "emoji-picker__emoji");
    button.tabIndex = -1;
    button.dataset.words = emoji.words.join(" ");
    section.append(button);
  });
  filter(picker.querySelector(".emoji-picker__search").value);
}

function visibleEmoji() {
  return Array.from(picker.querySelectorAll(".emoji-picker__grid .emoji-picker__emoji:not([hidden])"));
}

/** Show the emoji whose name or keywords start with every word typed (as rooms/emoji.py searches). */
function filter(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  picker.querySelectorAll(".emoji-picker__section").forEach((section) => {
    let shown = 0;
    section.querySelectorAll(".emoji-picker__emoji").forEach((button) => {
      const names = button.dataset.words.split(" ");
      button.hidden = !words.every((word) => names.some((name) => name.startsWith(word)));
      button.tabIndex = -1;
      if (!button.hidden) shown += 1;
    });
    section.hidden = shown === 0;
  });
  const visible = visibleEmoji();
  if (visible[0]) visible[0].tabIndex = 0; // Tab from the search box lands on the first result
  const empty = picker.querySelector(".emoji-picker__empty");
  empty.hidden = visible.length > 0 || !picker.querySelector(".emoji-picker__section");
}

// Arrow keys move between emoji (roving focus), Up from the first row returns to the search box.
function moveInGrid(event) {
  const keys = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: "up", ArrowDown: "down", Home: "home", End: "end" };
  if (!(event.key in keys) || !event.target.matches(".emoji-picker__emoji")) return;
  event.preventDefault();
  const buttons = visibleEmoji();
  const index = buttons.indexOf(event.target);
  const step = keys[event.key];
  let next = index;
  if (step === "home") next = 0;
  else if (step === "end") next = buttons.length - 1;
  else if (typeof step === "number") next = index + step;
  else next = nearestInNextRow(buttons, index, step === "down" ? 1 : -1);
  if (next < 0) {
    picker.querySelector(".emoji-picker__search").focus();
    return;
  }
  next = Math.min(next, buttons.length - 1);
  buttons.forEach((button) => (button.tabIndex = -1));
  buttons[next].tabIndex = 0;
  buttons[next].focus();
}

/** The emoji in the row above or below (groups wrap rows unevenly): the one nearest in x. */
function nearestInNextRow(buttons, index, direction) {
  const here = buttons[index].getBoundingClientRect();
  let best = -1;
  let bestDistance = Infinity;
  let rowTop = null;
  for (let i = index + direction; i >= 0 && i < buttons.length; i += direction) {
    const box = buttons[i].getBoundingClientRect();
    if (Math.abs(box.top - here.top) < 2) continue;
    if (rowTop === null) rowTop = box.top;
    if (Math.abs(box.top - rowTop) >= 2) break;
    const distance = Math.abs(box.left - here.left);
    if (distance < bestDistance) {
      best = i;
      bestDistance = distance;
    }
  }
  return best;
}

function openPicker(messageId, from) {
  if (!picker) buildPicker();
  picking = messageId;
  opener = from;
  picker.hidden = false;
  place(from);
  const search = picker.querySelector(".emoji-picker__search");
  search.value = "";
  if (picker.querySelector(".emoji-picker__section")) filter("");
  search.focus({ preventScroll: true });
}

function closePicker() {
  if (!picker || picker.hidden) return;
  picker.hidden = true;
  picking = null;
  const back = opener;
  opener = null;
  if (back && back.isConnected && back.focus) back.focus({ preventScroll: true });
}

// Next to what opened it, inside the window; a sheet along the bottom on a phone (CSS).
function place(from) {
  const narrow = window.matchMedia("(max-width: 480px)").matches;
  picker.classList.toggle("emoji-picker--sheet", narrow);
  if (narrow) return;
  const box = from.getBoundingClientRect();
  const width = picker.offsetWidth;
  const height = picker.offsetHeight;
  const below = box.bottom + 6 + height <= window.innerHeight;
  const top = below ? box.bottom + 6 : Math.max(8, box.top - 6 - height);
  const left = Math.min(Math.max(8, box.right - width), window.innerWidth - width - 8);
  picker.style.top = top + "px";
  picker.style.left = left + "px";
}

document.addEventListener("pointerdown", (event) => {
  if (!picker || picker.hidden) return;
  const target = event.target;
  if (picker.contains(target) || (opener && opener.contains(target))) return;
  closePicker();
});
// Tabbing out of the picker closes it, as a click outside does.
document.addEventListener("focusin", (event) => {
  if (picker && !picker.hidden && !picker.contains(event.target) && event.target !== opener) {
    picker.hidden = true;
    picking = null;
    opener = null;
  }
});
// A phone's keyboard opening resizes the window: the sheet stays; a popup follows its opener.
window.addEventListener("resize", () => {
  if (picker && !picker.hidden && opener && opener.isConnected) place(opener);
});
