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
        notice.textContent = "Message from a blocked account · show";
        notice.addEventListener("click", () => el.classList.add("is-revealed"));
        el.prepend(notice);
      }
    });
  }

  document.addEventListener("calpico:blocked", () => collapseBlocked(document));

  function decorate(root) {
    if (!root.querySelectorAll) return;
    collapseBlocked(root);
    if (me) {
      // Pushed fragments are rendered for everyone: I am online, and I don't mention myself.
      within(root, '[data-presence-user="' + me + '"]').forEach((el) => el.classList.add("is-online"));
      within(root, '#mention-candidates li[data-user-id="' + me + '"]').forEach((el) => el.remove());
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

  // The composer's client_id makes a resent message one message. A page the browser
  // brings back (Back button: the HTML from its cache, a restored form or the
  // back-forward cache) would hold the id of a message it already sent, so every showing
  // of the page takes a fresh one; the server's answer to a send brings the next.
  function freshId() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID(); // secure contexts only
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function renewClientId() {
    const input = document.querySelector('#composer input[name="client_id"]');
    if (input) input.value = freshId();
  }

  window.addEventListener("pageshow", (event) => {
    if (event.persisted) renewClientId();
  });

  document.addEventListener("DOMContentLoaded", () => {
    renewClientId();
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

// The composer: "@" suggests the room's members and its assistant; an image picked with
// the image button, pasted or dropped shows with its name.
(function () {
  "use strict";

  let menu = null;
  let choices = [];
  let selected = 0;
  let start = -1;

  function candidates() {
    return Array.from(document.querySelectorAll("#mention-candidates li")).map((li) => ({
      mention: li.dataset.mention,
      label: li.dataset.label,
    }));
  }

  function close() {
    if (menu) menu.remove();
    menu = null;
    choices = [];
    start = -1;
  }

  function render(textarea) {
    if (!menu) {
      menu = document.createElement("ul");
      menu.className = "mention-menu";
      menu.id = "mention-menu";
      menu.setAttribute("role", "listbox");
      menu.addEventListener("mousedown", (event) => {
        const item = event.target.closest("li");
        if (!item) return;
        event.preventDefault();
        selected = Number(item.dataset.index);
        pick(textarea);
      });
      textarea.closest("#composer").appendChild(menu);
    }
    menu.replaceChildren(
      ...choices.map((choice, index) => {
        const li = document.createElement("li");
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
  }

  let lastTyped = null;

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
      .slice(0, 8);
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
    const target = event.target;
    if (target instanceof HTMLTextAreaElement && target.closest("#composer")) update(target);
    if (target instanceof HTMLInputElement && target.type === "file" && target.closest("#composer")) {
      showAttachment(target, "");
    }
  });

  // What is attached: a thumbnail, the file's name and Remove; or why a file was not taken.
  let thumbnailUrl = null;

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

  // Images pasted into the composer or dropped on the page go into the composer's file
  // input, as if picked with the image button.
  const IMAGE_TYPES = ["image/jpeg", "image/png", "image/webp", "image/gif"];

  function composerFileInput() {
    return document.querySelector('#composer input[type="file"]');
  }

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

  document.addEventListener("paste", (event) => {
    const target = event.target;
    if (!(target instanceof Element) || !target.closest("#composer") || !event.clipboardData) return;
    const files = Array.from(event.clipboardData.files || []);
    // Text copied from a document may come with a picture of itself: then the text is meant.
    if (!files.length || event.clipboardData.types.includes("text/plain")) return;
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
    document.querySelector("#composer textarea")?.focus();
  });

  // Capture phase: the menu's keys must not also send the message.
  document.addEventListener(
    "keydown",
    (event) => {
      if (!menu || event.isComposing || !(event.target instanceof HTMLTextAreaElement)) return;
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

  document.addEventListener("focusout", (event) => {
    if (event.target instanceof HTMLTextAreaElement && event.target.closest("#composer")) setTimeout(close, 150);
  });
})();

// Forms pushed over the socket were rendered without a request, so they carry no CSRF
// token; htmx sends it as a header, a plain form gets it added here.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
  if (form.querySelector('input[name="csrfmiddlewaretoken"]')) return;
  let token = "";
  try {
    token = JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return;
  }
  if (!token) return;
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = "csrfmiddlewaretoken";
  input.value = token;
  form.appendChild(input);
});
