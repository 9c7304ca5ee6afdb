// Calpico's service worker (served at /sw.js by notifications.views.service_worker, scope
// "/"): the offline page for the installed app, notifications pushed while Calpico is
// closed, and what a click on one opens. docs/notifications.md describes the payload.
"use strict";

const OFFLINE_URL = "{{ offline_url|escapejs }}";
const ICON = "{{ icon|escapejs }}";
const CACHE = "calpico-offline-v1";
// Who is signed in on this browser, written by every signed-in page (static/js/push.js).
const PERSON_CACHE = "calpico-person";
const PERSON_KEY = "/sw/person";
// What a page writes there as the form to sign out goes: nobody is signed in here.
const NOBODY = "-";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.add(new Request(OFFLINE_URL, { cache: "reload" }))).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((name) => name !== CACHE && name !== PERSON_CACHE).map((name) => caches.delete(name)),
      ))
      .then(() => self.clients.claim()),
  );
});

// Pages come from the network, always; only when there is none does the offline page show.
self.addEventListener("fetch", (event) => {
  if (event.request.mode !== "navigate") return;
  event.respondWith(
    fetch(event.request).catch(() => caches.open(CACHE).then((cache) => cache.match(OFFLINE_URL))),
  );
});

/** What a push carries (notifications.rules.Notification.payload), as options for showNotification. */
function notificationFrom(data) {
  return {
    title: String(data.title || "Calpico"),
    options: {
      body: String(data.body || ""),
      tag: String(data.tag || "calpico"),
      // The newest of a room replaces the older one and still tells the person.
      renotify: Boolean(data.tag),
      icon: ICON,
      // Whom it is for: a page closes it once someone else signs in (static/js/push.js).
      data: { url: sameOriginPath(data.url), to: data.to === undefined ? null : String(data.to) },
    },
  };
}

/** A path on this site to open, never another site's address. */
function sameOriginPath(url) {
  try {
    const parsed = new URL(String(url || "/rooms/"), self.location.origin);
    if (parsed.origin !== self.location.origin) return "/rooms/";
    return parsed.pathname + parsed.search + parsed.hash;
  } catch {
    return "/rooms/";
  }
}

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : "" };
  }
  event.waitUntil(show(data));
});

/** The person last signed in on this browser ("" if no page has said). */
async function signedIn() {
  try {
    const stored = await (await caches.open(PERSON_CACHE)).match(PERSON_KEY);
    return stored ? await stored.text() : "";
  } catch {
    return "";
  }
}

/**
 * A push is for one person (`to`). One for someone other than the person signed in here
 * is not shown: it was sent before the server forgot the device (it waited at the push
 * service while the browser was offline, or came before the new person's first page).
 * After a sign-out the page wrote "-": nobody, and no push at all is shown (one saying
 * nothing of whom it is for, recorded before pushes did, was for whoever signed out).
 */
async function show(data) {
  const person = await signedIn();
  if (person === NOBODY) return;
  if (person && data.to !== undefined && String(data.to) !== person) return;
  const { title, options } = notificationFrom(data);
  await self.registration.showNotification(title, options);
}

/**
 * Which window to use for a click: one already showing the target, else any Calpico
 * window (it goes there), else none (a new one opens). Nothing is marked read by this:
 * the page does that as it shows the messages.
 */
async function openAt(path) {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const target = new URL(path, self.location.origin).href;
  const showing = windows.find((client) => client.url === target);
  if (showing) return showing.focus();
  const other = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (other) {
    // Focusing needs the click's user activation; a window that cannot take the focus
    // still goes to the message.
    const focused = await other.focus().catch(() => other);
    return (focused || other).navigate(target);
  }
  return self.clients.openWindow(target);
}

function onNotificationClick(event) {
  event.notification.close();
  const path = sameOriginPath(event.notification.data && event.notification.data.url);
  event.waitUntil(openAt(path));
}

self.addEventListener("notificationclick", onNotificationClick);

// A subscription the push service renews (pushsubscriptionchange) is sent to the server by
// the next Calpico page that opens (static/js/push.js): a worker has no CSRF token to post it.
