// "@" in the composer suggests the room's members and its assistant (#mention-candidates,
// rendered with the page and updated live). The composer's textarea is an ARIA combobox
// (https://www.w3.org/WAI/ARIA/apg/patterns/combobox/) whose listbox pops up while a
// mention is typed: Up and Down choose, Enter or Tab insert, Escape closes. Focus stays
// in the textarea; aria-activedescendant says which option is chosen.
import { isComposerTextarea } from "./composer.js";
import { gettext } from "./i18n.js";

const MENU_ID = "mention-menu";
const MAX_CHOICES = 8;

let menu = null; // the open listbox, or null
let owner = null; // the textarea it belongs to
let choices = [];
let selected = 0;
let start = -1; // where the "@" being completed is in the text
let lastTyped = null;

function candidates() {
  return Array.from(document.querySelectorAll("#mention-candidates li")).map((li) => ({
    mention: li.dataset.mention,
    label: li.dataset.label,
  }));
}

/** The composer's textarea announces itself as a combobox (only with this script: without it there is no menu). */
function prepare(root) {
  if (!root.querySelectorAll || !document.getElementById("mention-candidates")) return;
  const textarea = root.querySelector("#composer textarea") || (isComposerTextarea(root) ? root : null);
  if (!textarea) return;
  textarea.setAttribute("role", "combobox");
  textarea.setAttribute("aria-autocomplete", "list");
  textarea.setAttribute("aria-expanded", "false");
}

document.addEventListener("htmx:load", (event) => prepare(event.detail.elt));
// A message was sent and the composer emptied (composer.js): nothing left to complete.
document.addEventListener("composer:reset", () => close());

function removeMenu() {
  if (menu) menu.remove();
  if (owner) {
    owner.setAttribute("aria-expanded", "false");
    owner.removeAttribute("aria-controls");
    owner.removeAttribute("aria-activedescendant");
  }
  menu = null;
  owner = null;
}

function close() {
  removeMenu();
  choices = [];
  start = -1;
}

function optionId(index) {
  return MENU_ID + "-option-" + index;
}

function render(textarea) {
  if (menu && owner !== textarea) removeMenu(); // the composer was replaced (a message was sent)
  if (!menu) {
    menu = document.createElement("ul");
    menu.className = "mention-menu";
    menu.id = MENU_ID;
    menu.setAttribute("role", "listbox");
    menu.setAttribute("aria-label", gettext("Mention"));
    menu.addEventListener("mousedown", (event) => {
      const item = event.target.closest("li");
      if (!item) return;
      event.preventDefault(); // the textarea keeps the focus
      selected = Number(item.dataset.index);
      pick(textarea);
    });
    textarea.closest("#composer").appendChild(menu);
    owner = textarea;
    textarea.setAttribute("aria-controls", MENU_ID);
    textarea.setAttribute("aria-expanded", "true");
  }
  menu.replaceChildren(
    ...choices.map((choice, index) => {
      const li = document.createElement("li");
      li.id = optionId(index);
      li.setAttribute("role", "option");
      li.dataset.index = String(index);
      li.setAttribute("aria-selected", index === selected ? "true" : "false");
      const name = document.createElement("span");
      name.className = "mention-menu__name";
      name.textContent = "@" + choice.mention;
      const label = document.createElement("span");
      label.className = "mention-menu__username";
      label.textContent = choice.label;
      li.append(name, label);
      return li;
    })
  );
  textarea.setAttribute("aria-activedescendant", optionId(selected));
}

function update(textarea) {
  const before = textarea.value.slice(0, textarea.selectionStart);
  const match = /(^|[\s(])@([\w.]{0,30})$/.exec(before);
  if (!match) return close();
  const typed = match[2].toLowerCase();
  if (typed !== lastTyped) selected = 0; // a new filter starts at its best match
  lastTyped = typed;
  // A mention typed out in full needs no menu: Enter then sends the message.
  if (typed && candidates().some((c) => c.mention.toLowerCase() === typed)) return close();
  choices = candidates()
    .filter((c) => c.mention.toLowerCase().startsWith(typed) || c.label.toLowerCase().startsWith(typed))
    .slice(0, MAX_CHOICES);
  if (!choices.length) return close();
  start = before.length - match[2].length - 1;
  selected = Math.min(selected, choices.length - 1);
  render(textarea);
}

function pick(textarea) {
  const choice = choices[selected];
  if (!choice) return close();
  const caret = textarea.selectionStart;
  const text = "@" + choice.mention + " ";
  textarea.value = textarea.value.slice(0, start) + text + textarea.value.slice(caret);
  const position = start + text.length;
  textarea.setSelectionRange(position, position);
  close();
  textarea.focus();
}

document.addEventListener("input", (event) => {
  if (isComposerTextarea(event.target)) update(event.target);
});

// Capture phase: the menu's keys must not also send the message (composer.js).
document.addEventListener(
  "keydown",
  (event) => {
    if (!menu || event.isComposing || event.target !== owner) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      selected = (selected + (event.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
      render(event.target);
    } else if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      event.stopImmediatePropagation();
      pick(event.target);
    } else if (event.key === "Escape") {
      event.preventDefault();
      close();
    }
  },
  true
);

// Focus left the textarea: close, unless it is back by then. The composer a send replaced
// lost its focus too, and its timer must not close a menu opened in the new one.
document.addEventListener("focusout", (event) => {
  if (!isComposerTextarea(event.target)) return;
  setTimeout(() => {
    if (!owner || document.activeElement !== owner) close();
  }, 150);
});
