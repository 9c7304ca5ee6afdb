// End-to-end encrypted rooms (docs/e2ee.md): MLS (RFC 9420) through the vendored ts-mls.
// Loaded only by an encrypted room's page (templates/e2ee/_panel.html).
//
// Each browser is a device: its signature key, its key packages' private keys and each
// room's group state live in this browser's IndexedDB, never on the server. The server
// (e2ee/views.py) relays ciphertext and orders the group's commits by epoch.
//
// One queue per page runs everything that reads or writes a group's state (sync, send),
// and a Web Lock per room keeps two tabs of the same browser from using it at once: MLS
// keys are used once, so two tabs advancing one state would lose messages.
//
// A message's keys are deleted once it is decrypted (forward secrecy), so the device keeps
// what it decrypted, and what it sent, in IndexedDB by the ciphertext's SHA-256: a reload
// shows it again without decrypting twice.
import * as mls from "../vendor/ts-mls-1.6.4/ts-mls.esm.js";
import { gettext, interpolate } from "./i18n.js";

const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const KEY_PACKAGES_KEPT = 5;
const WAIT_POLL_MS = 4000;
const MESSAGE_MAX_LENGTH = 4000; // settings.MESSAGE_MAX_LENGTH

const panel = document.getElementById("e2ee");
const enc = new TextEncoder();
const dec = new TextDecoder();

const REASONS = {
  before_join: () =>
    gettext("Sent before this device joined the conversation: new devices can't read earlier messages."),
  undecryptable: () =>
    gettext("It was altered after it was sent, or its keys are not on this device."),
  malformed: () => gettext("It is not a valid encrypted message."),
  wrong_sender: () => gettext("It is shown under someone other than the person who encrypted it."),
  replayed: () => gettext("It repeats an earlier encrypted message of this conversation."),
};

// What is encrypted: the sender's user id, then the text. ts-mls does not say who sent an
// application message, so the sender is inside the authenticated ciphertext, where the
// server can neither read nor change it, and the page shows the message only under them.
const PAYLOAD = /^calpico1:(\d+)\n/;

function payload(userId, text) {
  return `calpico1:${userId}\n${text}`;
}

function readPayload(plain, claimedAuthor) {
  const match = PAYLOAD.exec(plain);
  if (!match) return { text: plain, author: claimedAuthor }; // sent before the sender was inside
  return { text: plain.slice(match[0].length), author: Number(match[1]) };
}

/** Decrypted text is kept per room and ciphertext: a ciphertext copied into another room
 * (whose group could never decrypt it) finds nothing there. */
async function plainKey(roomId, ciphertext) {
  return `${roomId}:${await sha256Hex(ciphertext)}`;
}

// --- bytes ---------------------------------------------------------------------------

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

async function sha256Hex(text) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(text)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// --- IndexedDB -----------------------------------------------------------------------

const STORES = ["device", "keyPackages", "groups", "plain", "verified"];

function openDb(userId) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(`calpico-e2ee-${userId}`, 1);
    request.onupgradeneeded = () => {
      for (const name of STORES) if (!request.result.objectStoreNames.contains(name)) request.result.createObjectStore(name);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function idb(db, store, mode, work) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const result = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const dbGet = (db, store, key) => idb(db, store, "readonly", (s) => s.get(key));
const dbPut = (db, store, key, value) => idb(db, store, "readwrite", (s) => s.put(value, key));
const dbDelete = (db, store, key) => idb(db, store, "readwrite", (s) => s.delete(key));

// --- the server ----------------------------------------------------------------------

function csrfToken() {
  try {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  } catch {
    return "";
  }
}

class ServerError extends Error {
  constructor(status, data) {
    super((data && data.error) || `HTTP ${status}`);
    this.status = status;
    this.data = data || {};
  }
}

async function api(url, body) {
  const options = body === undefined
    ? { credentials: "same-origin" }
    : {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body),
      };
  const response = await fetch(url, options);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ServerError(response.status, data);
  return data;
}

// --- MLS state -----------------------------------------------------------------------

let impl = null;
async function suite() {
  if (!impl) impl = await mls.getCiphersuiteImpl(mls.getCiphersuiteFromName(SUITE));
  return impl;
}

function credentialFor(userId) {
  return { credentialType: "basic", identity: enc.encode(`user:${userId}`) };
}

function userOfLeaf(leaf) {
  const match = /^user:(\d+)$/.exec(dec.decode(leaf.credential.identity));
  return match ? Number(match[1]) : null;
}

function encodeState(state) {
  return mls.encodeGroupState(state);
}

function decodeState(bytes) {
  const [state] = mls.decodeGroupState(bytes, 0);
  return { ...state, clientConfig: mls.defaultClientConfig };
}

async function newKeyPackages(device, count) {
  const cs = await suite();
  const made = [];
  for (let i = 0; i < count; i++) {
    made.push(
      await mls.generateKeyPackageWithKey(
        credentialFor(device.userId),
        mls.defaultCapabilities(),
        mls.defaultLifetime,
        [],
        { signKey: device.signKey, publicKey: device.publicKey },
        cs,
      ),
    );
  }
  return made;
}

function encodeKeyPackage(made) {
  return toBase64(mls.encodeMlsMessage({ keyPackage: made.publicPackage, wireformat: "mls_key_package", version: "mls10" }));
}

/** This browser's device for the signed-in person, registered the first time. */
async function ensureDevice(db, ctx) {
  const existing = await dbGet(db, "device", "self");
  if (existing) return existing;
  const cs = await suite();
  const keys = await cs.signature.keygen();
  const device = { userId: ctx.userId, signKey: keys.signKey, publicKey: keys.publicKey };
  const packages = await newKeyPackages(device, KEY_PACKAGES_KEPT);
  const label = navigator.userAgentData?.brands?.at(-1)?.brand || (navigator.userAgent.match(/(Firefox|Chrome|Safari)\/[\d.]+/)?.[1] ?? "");
  const answer = await api(ctx.devicesUrl, {
    signature_key: toBase64(keys.publicKey),
    label: `${label} · ${navigator.platform || ""}`.slice(0, 80),
    key_packages: packages.map(encodeKeyPackage),
  });
  device.id = answer.device_id;
  for (const [i, id] of answer.key_package_ids.entries()) await dbPut(db, "keyPackages", id, packages[i]);
  await dbPut(db, "device", "self", device);
  return device;
}

/**
 * Upload key packages until the server holds KEY_PACKAGES_KEPT unclaimed ones. Counted by
 * the server (`left`), not by this browser's store: a package claimed by someone whose
 * commit then lost a race, or who claimed it on purpose, stays here unused, and counting
 * those would leave the device with none to hand out, so nobody could add it again.
 */
async function topUpKeyPackages(db, ctx, device, left) {
  if (!Number.isInteger(left) || left >= KEY_PACKAGES_KEPT) return;
  const packages = await newKeyPackages(device, KEY_PACKAGES_KEPT - left);
  const answer = await api(`${ctx.devicesUrl}${device.id}/key-packages/`, { key_packages: packages.map(encodeKeyPackage) });
  for (const [i, id] of answer.key_package_ids.entries()) await dbPut(db, "keyPackages", id, packages[i]);
}

// --- the room ------------------------------------------------------------------------

function status(text) {
  const el = document.getElementById("e2ee-status");
  if (el) el.textContent = text;
}

/** Everything one sync needs: the stored group, updated in memory and saved at the end. */
class Room {
  constructor(db, ctx, device) {
    this.db = db;
    this.ctx = ctx;
    this.device = device;
    this.record = null; // {state: bytes, joinedEpoch, lastSeq}
    this.state = null;
    this.server = null;
  }

  async load() {
    this.record = (await dbGet(this.db, "groups", this.ctx.roomId)) || null;
    this.state = this.record ? decodeState(this.record.state) : null;
  }

  async save() {
    this.record.state = encodeState(this.state);
    await dbPut(this.db, "groups", this.ctx.roomId, this.record);
  }

  epoch() {
    return Number(this.state.groupContext.epoch);
  }

  async fetchServer() {
    const since = this.state ? this.epoch() : 0;
    this.server = await api(`${this.ctx.stateUrl}?device=${this.device.id}&since=${since}`);
  }

  /** Make the group, or join it from a Welcome; false while waiting to be added. */
  async join() {
    const cs = await suite();
    if (!this.server.group) {
      const made = await newKeyPackages(this.device, 1);
      const state = await mls.createGroup(enc.encode(`calpico-room-${this.ctx.roomId}`), made[0].publicPackage, made[0].privatePackage, [], cs);
      const made_ = await api(this.ctx.groupUrl, { device: this.device.id });
      if (!made_.created) return false; // someone else's device made it first: wait for its Welcome
      this.state = state;
      this.record = { joinedEpoch: 0, lastSeq: 0 };
      await this.save();
      return true;
    }
    const welcome = this.server.welcome;
    if (!welcome) return false;
    const keyPackage = await dbGet(this.db, "keyPackages", welcome.key_package_id);
    if (!keyPackage) return false;
    const decoded = mls.decodeMlsMessage(fromBase64(welcome.data), 0)[0];
    this.state = await mls.joinGroup(decoded.welcome, keyPackage.publicPackage, keyPackage.privatePackage, mls.emptyPskIndex, cs);
    await dbDelete(this.db, "keyPackages", welcome.key_package_id);
    // Messages before the Welcome were never encrypted for this device; skip to now.
    this.record = { joinedEpoch: this.epoch(), lastSeq: 0 };
    await this.save();
    return true;
  }

  /** Apply the commits the server holds, in epoch order, up to `until` (or all). */
  async applyCommits(until = Infinity) {
    const cs = await suite();
    for (const commit of this.server.commits) {
      if (commit.epoch < this.epoch()) continue;
      if (commit.epoch !== this.epoch() || this.epoch() >= until) break;
      const message = mls.decodeMlsMessage(fromBase64(commit.data), 0)[0];
      if (message.wireformat !== "mls_private_message") throw new Error("A commit must be a private message.");
      const result = await mls.processPrivateMessage(this.state, message.privateMessage, mls.emptyPskIndex, cs);
      this.state = result.newState;
    }
  }

  /** Decrypt every encrypted message after the last one done, in order. */
  async decryptNew() {
    const cs = await suite();
    let more = true;
    while (more) {
      const page = await api(`${this.ctx.messagesUrl}?after=${this.record.lastSeq}`);
      more = page.more;
      for (const message of page.messages) {
        const key = await plainKey(this.ctx.roomId, message.data);
        const known = await dbGet(this.db, "plain", key);
        if (known && known.seq === undefined) {
          // One of mine (kept when sent): now it has its place in the room.
          await dbPut(this.db, "plain", key, { ...known, seq: message.seq });
        } else if (!known) {
          const entry = await this.decryptOne(message, cs);
          if (entry === null) {
            // Its epoch's commit is not on the server yet: the next sync takes it from here.
            await this.save();
            return;
          }
          if (entry.error === "before_join") this.record.missedEarlier = true;
          await dbPut(this.db, "plain", key, { ...entry, seq: message.seq });
        }
        this.record.lastSeq = message.seq;
      }
      await this.save();
    }
  }

  async decryptOne(message, cs) {
    let decoded;
    try {
      decoded = mls.decodeMlsMessage(fromBase64(message.data), 0)[0];
      if (decoded.wireformat !== "mls_private_message") throw new Error("not a private message");
    } catch {
      return { error: "malformed" };
    }
    const epoch = Number(decoded.privateMessage.epoch);
    if (epoch < this.record.joinedEpoch) return { error: "before_join" };
    if (epoch > this.epoch()) await this.applyCommits(epoch);
    if (epoch > this.epoch()) {
      // A commit accepted after this sync asked for them: ask again.
      await this.fetchServer();
      await this.applyCommits(epoch);
      if (epoch > this.epoch()) return null;
    }
    try {
      const result = await mls.processPrivateMessage(this.state, decoded.privateMessage, mls.emptyPskIndex, cs);
      this.state = result.newState;
      if (result.kind !== "applicationMessage") return { error: "malformed" };
      return readPayload(dec.decode(result.message), message.author_id);
    } catch {
      return { error: "undecryptable" };
    }
  }

  members() {
    return mls.getGroupMembers(this.state);
  }

  /** Whether someone else in the room can read what is sent now. */
  othersCanRead() {
    return this.members().some((leaf) => userOfLeaf(leaf) !== this.ctx.userId);
  }

  /** The group's leaves that are no longer a member's device (someone left or was removed). */
  staleLeaves() {
    const listed = new Set(this.server.devices.map((d) => d.signature_key));
    const mine = toBase64(this.device.publicKey);
    const stale = [];
    this.state.ratchetTree.forEach((node, index) => {
      if (node?.nodeType !== "leaf") return;
      const key = toBase64(node.leaf.signaturePublicKey);
      if (key !== mine && !listed.has(key)) stale.push(index / 2);
    });
    return stale;
  }

  /**
   * Make the group hold exactly the members' devices: add those it lacks, remove those of
   * people no longer in the room, in one commit. False if the group moved on first.
   */
  async addMissingDevices() {
    const inGroup = new Set(this.members().map((leaf) => toBase64(leaf.signaturePublicKey)));
    const missing = this.server.devices.filter((d) => !inGroup.has(d.signature_key));
    const proposals = this.staleLeaves().map((removed) => ({ proposalType: "remove", remove: { removed } }));
    if (!missing.length && !proposals.length) return true;
    const claimed = missing.length
      ? await api(this.ctx.claimUrl, { device: this.device.id, device_ids: missing.map((d) => d.id) })
      : { key_packages: [] };
    const cs = await suite();
    const used = [];
    for (const package_ of claimed.key_packages) {
      const decoded = mls.decodeMlsMessage(fromBase64(package_.data), 0)[0];
      const device = missing.find((d) => d.id === package_.device_id);
      // The key package must be signed by the key the server lists for that device and
      // name its owner: the server cannot slip in someone else's key unnoticed by the
      // safety number.
      if (decoded.wireformat !== "mls_key_package" || !device) continue;
      const leaf = decoded.keyPackage.leafNode;
      if (toBase64(leaf.signaturePublicKey) !== device.signature_key || userOfLeaf(leaf) !== device.user_id) continue;
      proposals.push({ proposalType: "add", add: { keyPackage: decoded.keyPackage } });
      used.push(package_.id);
    }
    if (!proposals.length) return true;
    const result = await mls.createCommit({ state: this.state, cipherSuite: cs }, { extraProposals: proposals, ratchetTreeExtension: true });
    const answer = await api(this.ctx.commitUrl, {
        device: this.device.id,
        epoch: this.epoch(),
        commit: toBase64(mls.encodeMlsMessage(result.commit)),
        welcome: result.welcome
          ? toBase64(mls.encodeMlsMessage({ welcome: result.welcome, wireformat: "mls_welcome", version: "mls10" }))
          : null,
        key_package_ids: used,
      });
    if (!answer.accepted) return false; // another commit came first
    this.state = result.newState;
    await this.save();
    return true;
  }

  async encrypt(text) {
    const cs = await suite();
    const result = await mls.createApplicationMessage(this.state, enc.encode(text), cs);
    this.state = result.newState;
    await this.save();
    return toBase64(
      mls.encodeMlsMessage({ privateMessage: result.privateMessage, wireformat: "mls_private_message", version: "mls10" }),
    );
  }
}

// --- safety numbers ------------------------------------------------------------------

/** 60 digits from both people's device keys in the group, the same on both screens. */
async function safetyNumber(room) {
  const byUser = new Map();
  for (const leaf of room.members()) {
    const user = userOfLeaf(leaf);
    if (!byUser.has(user)) byUser.set(user, []);
    byUser.get(user).push(toBase64(leaf.signaturePublicKey));
  }
  const parts = ["calpico-safety-number-v1"];
  for (const user of [...byUser.keys()].sort((a, b) => a - b)) parts.push(`${user}:${byUser.get(user).sort().join(",")}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", enc.encode(parts.join("|"))));
  const groups = [];
  for (let i = 0; i < 12; i++) {
    let value = 0;
    for (let j = 0; j < 5; j++) value = (value * 256 + digest[i * 5 + j]) % 100000;
    groups.push(String(value).padStart(5, "0"));
  }
  return groups.join(" ");
}

// --- the page ------------------------------------------------------------------------

function showPlain(body, entry) {
  body.replaceChildren();
  if (entry && "text" in entry) {
    const p = document.createElement("p");
    p.className = "e2ee-text";
    p.textContent = entry.text;
    body.append(p);
    body.dataset.e2eeShown = "text";
  } else if (entry && entry.error) {
    const p = document.createElement("p");
    p.className = "e2ee-error";
    p.setAttribute("role", "note");
    const strong = document.createElement("strong");
    strong.textContent = gettext("Couldn't decrypt this message.");
    p.append(strong, " ", (REASONS[entry.error] || REASONS.undecryptable)());
    body.append(p);
    body.dataset.e2eeShown = "error";
  } else {
    const p = document.createElement("p");
    p.className = "e2ee-status";
    p.textContent = gettext("Encrypted message");
    body.append(p);
  }
}

async function start() {
  const ctx = {
    roomId: Number(panel.dataset.roomId),
    userId: Number(panel.dataset.userId),
    devicesUrl: panel.dataset.devicesUrl,
    stateUrl: panel.dataset.stateUrl,
    messagesUrl: panel.dataset.messagesUrl,
    groupUrl: panel.dataset.groupUrl,
    claimUrl: panel.dataset.claimUrl,
    commitUrl: panel.dataset.commitUrl,
  };
  const db = await openDb(ctx.userId);
  let device = null;
  let room = null;
  let ready = false;
  let keyChangeAccepted = false;
  let queue = Promise.resolve();

  /** Run `work` after everything queued before it, holding this room's lock across tabs. */
  function enqueue(work) {
    const run = () => (navigator.locks ? navigator.locks.request(`calpico-e2ee-${ctx.userId}-${ctx.roomId}`, work) : work());
    const next = queue.then(run, run);
    queue = next.catch(() => {});
    return next;
  }

  async function renderAll() {
    const done = room?.record?.lastSeq ?? 0;
    for (const body of document.querySelectorAll("#messages [data-e2ee]")) {
      if (body.dataset.e2eeShown) continue;
      const article = body.closest("[data-seq]");
      const entry = await dbGet(db, "plain", await plainKey(ctx.roomId, body.dataset.e2ee));
      // Shown only where it was sent, under who encrypted it: the server places and names
      // messages, and could repeat one or put it under someone else.
      if (entry && "text" in entry && entry.seq !== undefined && entry.seq !== Number(article?.dataset.seq)) {
        showPlain(body, { error: "replayed" });
      } else if (entry && "text" in entry && entry.author !== Number(article?.dataset.authorId)) {
        showPlain(body, { error: "wrong_sender" });
      } else if (entry) showPlain(body, entry);
      // This device went through every message up to `done`, in order: a ciphertext there
      // it never saw was changed since (on the server, or on the way).
      else if (Number(article?.dataset.seq) <= done) showPlain(body, { error: "undecryptable" });
    }
    // A reply's quote says "Encrypted message" (the server can't quote what it can't read):
    // the quoted text, when this page has it decrypted.
    for (const quote of document.querySelectorAll("#messages .message__quote[data-quote-seq]")) {
      if (quote.dataset.e2eeShown) continue;
      const text = document.querySelector(`#messages [data-seq="${quote.dataset.quoteSeq}"] .e2ee-text`)?.textContent;
      const target = quote.querySelector(".message__quote-text");
      if (text && target) {
        target.textContent = text.length > 140 ? `${text.slice(0, 139)}…` : text;
        quote.dataset.e2eeShown = "text";
      }
    }
  }

  /**
   * The devices really in the group (its leaves: what messages are encrypted to and the
   * safety number is made of), each under the person its credential names, with what the
   * server says of it (browser, date); then devices the server lists that are not in the
   * group yet. The server's word on whose device it is is not taken: it could list one
   * device as Bob's to Alice and as Alice's to Bob, and both would see the same safety
   * number. My other devices can be removed.
   */
  function renderDevices() {
    const list = document.getElementById("e2ee-devices");
    if (!list || !room?.server || !room.state) return;
    const language = document.documentElement.lang || "en";
    const listed = new Map(room.server.devices.map((d) => [d.signature_key, d]));
    const names = new Map(room.server.devices.map((d) => [d.user_id, d.user_name]));
    const mine = toBase64(device.publicKey);
    const describe = (name, d) => {
      const added = d ? new Date(d.created_at).toLocaleDateString(language, { day: "numeric", month: "short", year: "numeric" }) : "";
      return [name, d?.label, d ? interpolate(gettext("added %(date)s"), { date: added }) : ""].filter(Boolean).join(" · ");
    };
    const removable = (item, d) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button button--small button--danger";
      button.textContent = gettext("Remove");
      button.dataset.removeDevice = d.id;
      item.append(" ", button);
    };
    const inGroup = new Set();
    const items = room.members().map((leaf) => {
      const key = toBase64(leaf.signaturePublicKey);
      inGroup.add(key);
      const owner = userOfLeaf(leaf);
      const d = listed.get(key);
      const item = document.createElement("li");
      item.textContent = describe(names.get(owner) || interpolate(gettext("person %(id)s"), { id: String(owner) }), d);
      if (key === mine) {
        item.append(` (${gettext("this device")})`);
      } else if (!d || d.user_id !== owner) {
        // Not the server's account of it: someone may be in between.
        item.className = "e2ee-devices__unknown";
        const warning = document.createElement("strong");
        warning.textContent = gettext("The server does not list this device as this person's.");
        item.append(" ", warning);
      } else if (owner === ctx.userId) {
        removable(item, d);
      }
      return item;
    });
    for (const d of room.server.devices) {
      if (inGroup.has(d.signature_key)) continue;
      const item = document.createElement("li");
      item.textContent = `${describe(d.user_name, d)} (${gettext("not in the group yet")})`;
      if (d.user_id === ctx.userId && d.id !== device.id) removable(item, d);
      items.push(item);
    }
    list.replaceChildren(...items);
  }

  document.getElementById("e2ee-devices")?.addEventListener("click", (event) => {
    const id = event.target.closest?.("[data-remove-device]")?.dataset.removeDevice;
    if (!id) return;
    if (!window.confirm(gettext("Remove this device? It will no longer be able to read new messages here."))) return;
    api(`${ctx.devicesUrl}${id}/remove/`, {}).then(syncAndRender, (error) =>
      status(interpolate(gettext("Encryption is not working on this device: %(reason)s"), { reason: error.message })),
    );
  });

  async function refreshVerification() {
    if (!room || !room.state) return;
    const number = await safetyNumber(room);
    document.getElementById("e2ee-safety-number").textContent = number;
    const verified = await dbGet(db, "verified", ctx.roomId);
    const mark = document.getElementById("e2ee-verified-mark");
    const warning = document.getElementById("e2ee-key-change");
    const button = document.getElementById("e2ee-verify-button");
    mark.hidden = !(verified && verified === number);
    button.hidden = Boolean(verified && verified === number);
    const changed = Boolean(verified && verified !== number);
    warning.hidden = !changed || keyChangeAccepted;
    if (changed) {
      document.getElementById("e2ee-key-change-text").textContent = gettext(
        "The keys in this conversation changed since you verified them: someone added a device, or someone is in between. Compare the safety number again before you send anything sensitive.",
      );
    }
    return { number, changed: changed && !keyChangeAccepted };
  }

  async function sync() {
    try {
      return await syncOnce();
    } catch (error) {
      if (!(error instanceof ServerError && error.data.device_gone)) throw error;
      // This browser's device was retired (past E2EE_MAX_DEVICES) or is not this
      // person's: start again as a new device, which other members' browsers add.
      for (const store of ["device", "keyPackages", "groups"]) await idb(db, store, "readwrite", (s) => s.clear());
      device = null;
      room = null;
      return await syncOnce();
    }
  }

  async function syncOnce() {
    device = device || (await ensureDevice(db, ctx));
    room = room || new Room(db, ctx, device);
    await room.load();
    await room.fetchServer();
    // Before waiting for a Welcome too: a device nobody can claim a package of waits for good.
    try {
      await topUpKeyPackages(db, ctx, device, room.server.key_packages_left);
    } catch (error) {
      // Too many uploads this hour: the next sync tries again; reading and sending go on.
      if (!(error instanceof ServerError && error.status === 429)) throw error;
    }
    if (!room.state) {
      if (!(await room.join())) {
        status(gettext("Waiting for another member's browser to add this device. Messages sent before it joins can't be read here."));
        ready = false;
        return false;
      }
      await room.fetchServer();
    }
    await room.decryptNew();
    await room.applyCommits();
    // The group moved on meanwhile: fetch and apply, then try adding again.
    for (let attempt = 0; attempt < 3 && !(await room.addMissingDevices()); attempt++) {
      await room.fetchServer();
      await room.decryptNew();
      await room.applyCommits();
    }
    await room.save();
    ready = true;
    status(
      room.record.missedEarlier
        ? gettext("End-to-end encrypted. Only the people in this conversation can read it. This device joined later: messages sent before it joined can't be read here.")
        : gettext("End-to-end encrypted. Only the people in this conversation can read it."),
    );
    return true;
  }

  let waiting = null;
  function syncAndRender() {
    return enqueue(async () => {
      const started = performance.now();
      const joined = await sync();
      window.calpicoE2ee.lastSyncMs = performance.now() - started;
      await renderAll();
      renderDevices();
      await refreshVerification();
      if (!joined && !waiting) waiting = setTimeout(() => ((waiting = null), syncAndRender()), WAIT_POLL_MS);
    }).catch((error) => {
      status(interpolate(gettext("Encryption is not working on this device: %(reason)s"), { reason: error.message }));
    });
  }

  // New messages (live, or older history loaded) and "… added a new device": catch up,
  // once for a burst of them. What this module writes into a message body is not news.
  let pending = false;
  const list = document.getElementById("messages");
  if (list) {
    new MutationObserver((records) => {
      const news = records.some(
        (r) =>
          !(r.target.closest && r.target.closest("[data-e2ee]")) &&
          [...r.addedNodes].some((n) => n.nodeType === 1 && (n.matches(".message, [data-e2ee]") || n.querySelector(".message, [data-e2ee]"))),
      );
      if (!news || pending) return;
      pending = true;
      queueMicrotask(() => {
        pending = false;
        syncAndRender();
      });
    }).observe(list, { childList: true, subtree: true });
  }

  // Sending: encrypt in the browser, then post the ciphertext through the composer's own
  // htmx request; the textarea's text never leaves the page.
  document.addEventListener(
    "submit",
    (event) => {
      const form = event.target;
      if (!(form instanceof HTMLFormElement) || form.id !== "composer") return;
      event.preventDefault();
      event.stopImmediatePropagation();
      const textarea = form.querySelector("textarea[name=body]");
      const text = (textarea?.value || "").trim();
      if (!text) return;
      if (text.length > MESSAGE_MAX_LENGTH) {
        // The server cannot count the characters of a ciphertext: said here instead.
        status(
          interpolate(gettext("A message is at most %(limit)s characters; this one has %(length)s."), {
            limit: MESSAGE_MAX_LENGTH.toLocaleString(document.documentElement.lang || "en"),
            length: text.length.toLocaleString(document.documentElement.lang || "en"),
          }),
        );
        return;
      }
      // The composer moved on (the send before this one went through and it took the next
      // client_id): this is the same text sent twice (Enter pressed again meanwhile).
      const clientId = form.querySelector('input[name="client_id"]')?.value;
      const movedOn = () => form.querySelector('input[name="client_id"]')?.value !== clientId;
      enqueue(async () => {
        if (movedOn()) return;
        if (!ready) await sync();
        if (!ready) return;
        const verification = await refreshVerification();
        if (verification && verification.changed) return; // the warning asks first
        // Another tab of this browser may have moved the group on: never encrypt from a
        // stale state (it would use a key twice).
        await room.load();
        await room.fetchServer();
        await room.decryptNew();
        await room.applyCommits();
        await room.addMissingDevices();
        if (!room.othersCanRead()) {
          status(gettext("Nobody else has opened this conversation on a device yet, so nobody could read your message. Try again once someone has."));
          return;
        }
        if (movedOn()) return;
        const ciphertext = await room.encrypt(payload(ctx.userId, text));
        await dbPut(db, "plain", await plainKey(ctx.roomId, ciphertext), { text, author: ctx.userId, mine: true });
        await window.htmx.ajax("POST", form.action, {
          source: form,
          target: "#composer",
          swap: "outerHTML",
          values: { body: ciphertext },
        });
      }).catch((error) => {
        status(interpolate(gettext("Couldn't encrypt your message: %(reason)s"), { reason: error.message }));
      });
    },
    true,
  );

  // Reply and Cancel reply fetch a new composer and would send the draft along to keep
  // it (hx-include="#id_body"): here the draft stays in the page instead.
  let draft = null;
  document.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.verb !== "get" || !/\/composer\/(\?|$)/.test(event.detail.path)) return;
    const parameters = event.detail.parameters;
    draft = document.querySelector("#composer textarea[name=body]")?.value ?? null;
    if (typeof parameters.delete === "function") parameters.delete("body");
    else delete parameters.body;
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (draft === null || event.detail.target?.id !== "composer") return;
    const textarea = document.querySelector("#composer textarea[name=body]");
    if (textarea && !textarea.value) textarea.value = draft;
    draft = null;
  });

  document.getElementById("e2ee-verify-button")?.addEventListener("click", () => {
    enqueue(async () => {
      if (!room?.state) return;
      await dbPut(db, "verified", ctx.roomId, await safetyNumber(room));
      keyChangeAccepted = false;
      await refreshVerification();
    });
  });
  document.getElementById("e2ee-key-change-ok")?.addEventListener("click", () => {
    enqueue(async () => {
      keyChangeAccepted = true;
      await dbDelete(db, "verified", ctx.roomId);
      await refreshVerification();
    });
  });

  await syncAndRender();
}

if (panel) {
  // For tests and the bench: how long the last full sync took.
  window.calpicoE2ee = { ready: start() };
}
