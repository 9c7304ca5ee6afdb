// Live updates over the page's one WebSocket (htmx ws extension). docs/protocol.md
// describes every frame. HTML frames are swapped by htmx (hx-swap-oob); JSON frames
// (they start with "{") carry per-viewer state and are handled here.
(function () {
  "use strict";

  const live = document.getElementById("live");
  if (!live) return;

  // Pushes carry fragments for parts a page may not have (the assistant's name in a
  // composer that is not shown, the member count of a direct room): those are left out
  // here instead of reaching htmx, which would report each one as an error.
  htmx.defineExtension("calpico-live", {
    transformResponse(text) {
      const template = document.createElement("template");
      template.innerHTML = text;
      const orphans = Array.from(template.content.children).filter((child) => {
        const oob = child.getAttribute("hx-swap-oob") || "true";
        const colon = oob.indexOf(":");
        const selector = colon >= 0 ? oob.slice(colon + 1) : child.id ? "#" + CSS.escape(child.id) : "";
        return selector && !document.querySelector(selector);
      });
      if (!orphans.length) return text;
      orphans.forEach((child) => child.remove());
      return template.innerHTML;
    },
  });
  const roomId = live.dataset.roomId ? Number(live.dataset.roomId) : null;
  const banner = document.getElementById("connection-banner");
  let baseTitle = document.title;
  let socket = null;
  let serverTime = document.body.dataset.serverTime || null;
  let retries = 0;
  const typists = new Map();

  function send(frame) {
    if (socket) socket.send(JSON.stringify(frame));
  }

  function messages() {
    return document.getElementById("messages");
  }

  function seqs() {
    const list = messages();
    if (!list) return [];
    return Array.from(list.querySelectorAll(":scope > [data-seq]"), (el) => Number(el.dataset.seq));
  }

  function visible() {
    return document.visibilityState === "visible";
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = false;
  }

  // Connection lifecycle

  let openedAt = 0;

  live.addEventListener("htmx:wsOpen", (event) => {
    socket = event.detail.socketWrapper;
    openedAt = Date.now();
    banner.hidden = true;
    if (roomId) {
      // Always, also on the first connection: a message may have arrived between
      // rendering the page and opening the socket.
      const known = seqs();
      send({
        type: "resume",
        room: roomId,
        last_seq: known.length ? Math.max(...known) : 0,
        oldest_seq: known.length ? Math.min(...known) : 0,
        since: serverTime,
      });
    }
    if (live.dataset.connected) refreshSidebar();
    live.dataset.connected = "yes";
  });

  live.addEventListener("htmx:wsClose", (event) => {
    const code = event.detail.event.code;
    // A connection that held for a while starts the back-off afresh; one the server keeps
    // closing right away (e.g. 4429) waits longer each time.
    if (openedAt && Date.now() - openedAt > 10000) retries = 0;
    openedAt = 0;
    if (code === 4401) return showBanner("You have been signed out. Reload the page to sign in again.");
    if (code === 4403 || code === 4404) return showBanner("You are no longer a member of this room.");
    showBanner("Reconnecting…");
    // The extension retries 1006, 1011, 1012 and 1013 by itself; everything else
    // (a server restart's 1001, a normal close, a frame too big (1009), too many frames)
    // is ours to retry.
    if ([1006, 1011, 1012, 1013].includes(code)) return;
    const delay = Math.min(30000, 1000 * 2 ** retries) * (0.5 + Math.random() / 2);
    retries += 1;
    const wrapper = event.detail.socketWrapper;
    setTimeout(() => wrapper.reconnect(), delay);
  });

  function refreshSidebar() {
    // The room marked in the sidebar: this page's, or the one whose settings it shows.
    const current = document.querySelector('#sidebar [aria-current="page"]')?.closest("li")?.dataset.roomId;
    const url = "/rooms/sidebar/" + (current ? "?room=" + current : "");
    htmx.ajax("GET", url, { target: "#sidebar", swap: "outerHTML" }).then(updateTitle);
  }

  // JSON frames

  const handlers = {
    hello(frame) {
      if (!serverTime) serverTime = frame.server_time;
    },
    caught_up(frame) {
      serverTime = frame.server_time;
      markRead();
    },
    reload() {
      location.reload();
    },
    error(frame) {
      console.warn("Calpico:", frame.message);
    },
    unread(frame) {
      setBadge(frame.room, frame.room === roomId && visible() ? 0 : frame.count);
    },
    typing(frame) {
      if (frame.room !== roomId) return;
      clearTimeout(typists.get(frame.user)?.timer);
      const timer = setTimeout(() => {
        typists.delete(frame.user);
        showTyping();
      }, frame.seconds * 1000);
      typists.set(frame.user, { name: frame.name, timer });
      showTyping();
    },
    presence(frame) {
      const mark = (user, online) => {
        document.querySelectorAll('[data-presence-user="' + user + '"]').forEach((el) => {
          el.classList.toggle("is-online", online);
          const dot = el.querySelector(".presence__dot");
          if (dot) dot.title = online ? "Online" : "Offline";
        });
      };
      frame.online.forEach((user) => mark(user, true));
      frame.offline.forEach((user) => mark(user, false));
    },
    blocked(frame) {
      const list = document.getElementById("messages");
      if (list) {
        list.dataset.blocked = frame.users.join(",");
        document.dispatchEvent(new CustomEvent("calpico:blocked"));
      }
    },
    room_removed(frame) {
      document.getElementById("sidebar-entry-" + frame.room)?.remove();
      updateTitle();
    },
    pong() {},
  };

  live.addEventListener("htmx:wsBeforeMessage", (event) => {
    const text = event.detail.message;
    if (typeof text !== "string" || text[0] !== "{") return;
    event.preventDefault();
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const handler = handlers[frame.type];
    if (handler) handler(frame);
  });

  // HTML frames: new messages, edits, sidebar previews, toasts

  // Messages that arrive in the room on screen while the tab is hidden count as unread
  // here: the server sends unread counts only for rooms that are not on screen.
  let unseenHere = 0;

  document.body.addEventListener("htmx:oobBeforeSwap", (event) => {
    const target = event.detail.target;
    if (target.id !== "messages" && target.id !== "room-list") return;
    if (target.id === "messages" && !visible()) {
      Array.from(event.detail.fragment.children).forEach((child) => {
        const author = child.dataset && child.dataset.authorId;
        if (author && author !== document.body.dataset.userId && !document.getElementById(child.id)) unseenHere++;
      });
    }
    // A message (or sidebar entry) already on the page, e.g. my own message that the
    // post response already showed, is not added twice.
    Array.from(event.detail.fragment.children).forEach((child) => {
      if (child.id && document.getElementById(child.id)) child.remove();
      const author = Number(child.dataset && child.dataset.authorId);
      if (author && typists.has(author)) {
        // Their message arrived: they are no longer typing it.
        clearTimeout(typists.get(author).timer);
        typists.delete(author);
        showTyping();
      }
    });
  });

  live.addEventListener("htmx:wsAfterMessage", () => {
    const list = messages();
    if (unseenHere) setBadge(roomId, unseenHere);
    if (list) {
      const stick = nearBottom();
      orderBySeq(list);
      document.querySelectorAll(".history__empty").forEach((el) => el.remove());
      if (stick) scrollToBottom();
      markRead();
    }
    document.querySelectorAll("#toasts > .toast:not([data-shown])").forEach(showToast);
  });

  document.body.addEventListener("htmx:oobAfterSwap", (event) => {
    const target = event.detail.target;
    if (target && target.id === "messages") orderBySeq(target);
    if (target && target.id === "room-title") {
      // The group was renamed: the tab says so too.
      baseTitle = document.getElementById("room-title").textContent + " · Calpico";
      updateTitle();
    }
    if (target && target.id && target.id.startsWith("sidebar-preview-")) {
      // New activity moves the room to the top of the list. The target was replaced
      // (an outerHTML swap), so look up the element now in its place.
      const el = document.getElementById(target.id);
      const entry = el && el.closest("li");
      const list = document.getElementById("room-list");
      // Pinned rooms (my assistant) keep their place above the list.
      if (entry && list && entry.parentElement === list && list.firstElementChild !== entry) list.prepend(entry);
    }
  });

  function orderBySeq(list) {
    // Insertion sort from the end: at most a few elements are ever out of place.
    const items = Array.from(list.querySelectorAll(":scope > [data-seq]"));
    for (let i = items.length - 1; i > 0; i--) {
      const item = items[i];
      let j = i - 1;
      while (j >= 0 && Number(items[j].dataset.seq) > Number(item.dataset.seq)) j--;
      if (j < i - 1) {
        items[j + 1].before(item);
        items.splice(i, 1);
        items.splice(j + 1, 0, item);
        i++;
      }
    }
  }

  function nearBottom() {
    const history = document.getElementById("history");
    return !history || history.scrollHeight - history.scrollTop - history.clientHeight < 120;
  }

  function scrollToBottom() {
    const history = document.getElementById("history");
    if (history) history.scrollTop = history.scrollHeight;
  }

  function setBadge(room, count) {
    const badge = document.getElementById("sidebar-badge-" + room);
    if (badge) {
      badge.textContent = count;
      badge.dataset.count = count;
      badge.title = count + " unread";
      badge.hidden = count === 0;
      badge.closest(".room-link").classList.toggle("has-unread", count > 0);
    }
    updateTitle();
  }

  // Read positions go to the server at most every 2 seconds, however busy the room.
  let readTimer = null;
  let lastReadSent = 0;

  function markRead() {
    if (!roomId || !visible()) return;
    unseenHere = 0;
    setBadge(roomId, 0);
    if (readTimer) return;
    const wait = Math.max(0, 2000 - (Date.now() - lastReadSent));
    readTimer = setTimeout(() => {
      readTimer = null;
      lastReadSent = Date.now();
      const known = seqs();
      if (known.length) send({ type: "read", room: roomId, seq: Math.max(...known) });
    }, wait);
  }

  document.addEventListener("visibilitychange", markRead);

  function updateTitle() {
    let total = 0;
    document.querySelectorAll(".room-list .badge").forEach((badge) => {
      if (!badge.closest(".is-muted")) total += Number(badge.dataset.count || 0);
    });
    document.title = total ? "(" + total + ") " + baseTitle : baseTitle;
  }

  function showToast(toast) {
    toast.dataset.shown = "yes";
    const forThisRoom = Number(toast.dataset.roomId) === roomId;
    if (!visible() && document.body.dataset.desktopNotifications === "on" && "Notification" in window &&
        Notification.permission === "granted") {
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
    if (forThisRoom && visible()) {
      toast.remove(); // the message is right there on the screen
      return;
    }
    setTimeout(() => toast.remove(), 6000);
  }

  function showTyping() {
    const line = document.getElementById("typing");
    if (!line) return;
    const names = Array.from(typists.values(), (t) => t.name);
    if (!names.length) line.textContent = "";
    else if (names.length === 1) line.textContent = names[0] + " is typing…";
    else if (names.length === 2) line.textContent = names[0] + " and " + names[1] + " are typing…";
    else line.textContent = "Several people are typing…";
  }

  // Typing: at most one frame every 3 seconds while someone types.
  let lastTyping = 0;
  document.addEventListener("input", (event) => {
    if (!roomId || !event.target.closest || !event.target.closest("#composer")) return;
    const now = Date.now();
    if (now - lastTyping < 3000) return;
    lastTyping = now;
    send({ type: "typing", room: roomId });
  });

  // Sending ends the typing; the next keystroke announces a new message at once.
  document.addEventListener("submit", (event) => {
    if (event.target.id === "composer") lastTyping = 0;
  });

  document.addEventListener("DOMContentLoaded", updateTitle);
})();
