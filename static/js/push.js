// Calpico as an installed app, and its notifications while it is closed: registers the
// service worker (/sw.js) on every page, keeps this browser's push subscription known to
// the server, drives the "Notify this device" switch of the notification settings, and
// tells the socket whether this page is in front of the person (then nothing is pushed for
// the room it shows). docs/notifications.md has the whole picture.
import { gettext } from "./i18n.js";
import { live, onFrame, send } from "./live.js";

const CONFIRMED_KEY = "calpico-push-confirmed";
// Who is signed in on this browser, for the service worker (templates/notifications/sw.js
// reads the same cache): it drops a push for anyone else.
const PERSON_CACHE = "calpico-person";
const PERSON_KEY = "/sw/person";
const CONFIRM_EVERY_MS = 3600 * 1000;
const SUBSCRIBE_TIMEOUT_MS = 30 * 1000;

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return "";
  }
}

function postJSON(url, data) {
  return fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify(data),
    credentials: "same-origin",
  });
}

const supported = "serviceWorker" in navigator && window.isSecureContext;

/** The service worker's registration, or null where there can be none. */
export const registration = supported
  ? navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((error) => {
    console.warn("Calpico: the service worker did not register:", error);
    return null;
  })
  : Promise.resolve(null);

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function sameKey(buffer, base64url) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  const b = keyBytes(base64url);
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

async function currentSubscription() {
  const found = await registration;
  if (!found || !("pushManager" in found)) return null;
  const ready = await navigator.serviceWorker.ready;
  return ready.pushManager.getSubscription();
}

/**
 * Once an hour a signed-in page tells the server this device is still in use ("last used"),
 * and at once in a session that does not know the device yet: signing out of that session
 * stops its notifications, and a device still listed for someone else (who never signed out
 * here) stops being notified for them. The keys prove the page holds the subscription.
 */
async function confirmSubscription() {
  const url = document.body.dataset.pushConfirmUrl;
  if (!url) return;
  const last = Number(localStorage.getItem(CONFIRMED_KEY) || 0);
  if (document.body.dataset.pushSession === "known" && Date.now() - last < CONFIRM_EVERY_MS) return;
  const subscription = await currentSubscription();
  if (!subscription) return;
  const response = await postJSON(url, { ...subscription.toJSON(), confirm: true });
  // Listed or not ({confirmed: false}: not this person's device), asked again in an hour.
  if (response.ok) localStorage.setItem(CONFIRMED_KEY, String(Date.now()));
}

/**
 * Close the notifications this browser shows that are not for `person` ("": all of them):
 * what was shown to the last person signed in here (message text included) does not stay
 * on the screen of the next one.
 */
async function closeNotificationsNotFor(person) {
  const found = await registration;
  if (!found || !("getNotifications" in found)) return;
  for (const shown of await found.getNotifications()) {
    const to = shown.data && shown.data.to;
    if (!person || to === undefined || to === null || String(to) !== person) shown.close();
  }
}

/** Tell the service worker who is signed in here, from every signed-in page. */
async function notePerson() {
  const person = document.body.dataset.userId;
  if (!person || !("caches" in window)) return;
  const cache = await caches.open(PERSON_CACHE);
  const stored = await cache.match(PERSON_KEY);
  if (stored && (await stored.text()) === person) return;
  // Someone else was signed in here (or signed out): their notifications go, before the
  // cache says who is here now (a page left half-way leaves that to the next one).
  await closeNotificationsNotFor(person).catch(() => {});
  await cache.put(PERSON_KEY, new Response(person, { headers: { "Content-Type": "text/plain" } }));
  // And one the worker showed meanwhile (it still compared with the last person).
  await closeNotificationsNotFor(person).catch(() => {});
}

// Written for nobody: after a sign-out the worker shows no push at all.
const NOBODY = "-";

/**
 * Signing out: the server forgets this device, but a push sent before (waiting at the push
 * service while the browser was offline) could still arrive: the worker is told that nobody
 * is signed in here before the form goes.
 */
function onSignOut(event) {
  const form = event.target;
  const url = document.body.dataset.signOutUrl;
  if (!url || !(form instanceof HTMLFormElement) || form.dataset.personForgotten) return;
  if (new URL(form.action, location.href).pathname !== url) return;
  event.preventDefault();
  form.dataset.personForgotten = "yes";
  const forget = Promise.all([
    caches.open(PERSON_CACHE).then((cache) => cache.put(PERSON_KEY, new Response(NOBODY))),
    // What was shown to the person does not stay on the screen of whoever comes next.
    closeNotificationsNotFor("").catch(() => {}),
  ]);
  const late = new Promise((resolve) => setTimeout(resolve, 1000));
  Promise.race([forget, late]).catch(() => {}).finally(() => form.submit());
}

async function turnOn(section) {
  if ((await Notification.requestPermission()) !== "granted") {
    throw new Error(gettext("Your browser blocks notifications from this site; allow them in its site settings first."));
  }
  const ready = await navigator.serviceWorker.ready;
  const key = section.dataset.vapidKey;
  let subscription = await ready.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  if (!subscription) {
    // The browser registers with its push service over the network, which may never answer.
    const late = new Promise((_, reject) => setTimeout(
      () => reject(new Error(gettext("Your browser's push service did not answer; try again later."))),
      SUBSCRIBE_TIMEOUT_MS,
    ));
    subscription = await Promise.race([
      ready.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }),
      late,
    ]);
  }
  const response = await postJSON(section.dataset.subscribeUrl, subscription.toJSON());
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    throw new Error(answer.error || gettext("Notifications could not be turned on; try again."));
  }
  localStorage.setItem(CONFIRMED_KEY, String(Date.now()));
}

async function turnOff(section) {
  const subscription = await currentSubscription();
  if (!subscription) return;
  await postJSON(section.dataset.forgetUrl, { endpoint: subscription.endpoint });
  await subscription.unsubscribe();
}

async function setUpSwitch(section) {
  const input = document.getElementById("push-device");
  const status = document.getElementById("push-status");
  if (!supported || !("PushManager" in window) || !("Notification" in window)) {
    status.textContent = gettext(
      "This browser cannot get notifications from this site while it is closed: it needs HTTPS (or 127.0.0.1) and Web Push.",
    );
    return;
  }
  const subscription = await currentSubscription();
  const listed = Array.from(section.querySelectorAll("[data-endpoint]")).map((item) => item.dataset.endpoint);
  input.checked = Boolean(subscription && listed.includes(subscription.endpoint));
  input.disabled = false;
  input.addEventListener("change", async () => {
    input.disabled = true;
    status.textContent = input.checked ? gettext("Asking your browser…") : "";
    try {
      await (input.checked ? turnOn(section) : turnOff(section));
      location.reload();
    } catch (error) {
      input.checked = !input.checked;
      status.textContent = error.message;
    } finally {
      input.disabled = false;
    }
  });
}

const section = document.getElementById("push-section");
if (supported) {
  // Before anything else a page does with push: a browser where someone else was subscribed
  // stops getting their notifications (the server forgets the device, the worker drops
  // what is still on its way).
  notePerson().catch(() => {});
  confirmSubscription().catch(() => {});
  if ("caches" in window) document.addEventListener("submit", onSignOut);
}
if (section) setUpSwitch(section);

if (live) {
  // The socket is told when this page comes in front of the person or leaves it; each new
  // connection starts as not in front.
  let told = null;
  const tell = () => {
    const inFront = document.visibilityState === "visible" && document.hasFocus();
    if (inFront === told) return;
    told = inFront;
    send({ type: "viewing", visible: inFront });
  };
  onFrame("hello", () => {
    told = null;
    tell();
  });
  document.addEventListener("visibilitychange", tell);
  window.addEventListener("focus", tell);
  window.addEventListener("blur", tell);
}
