"""What end-to-end encryption costs in the browser (docs/e2ee.md), in Chromium.

A benchmark that prints figures, not a test. Two parts:

1. The vendored MLS library alone, in a page: a group of two, `--messages` messages of
   ordinary length encrypted by one member and decrypted by the other, one at a time;
   prints the time per message to encrypt and to decrypt (median and p95).
2. A real server (daphne, fresh var/ directory, SQLite unless DATABASE_URL says otherwise)
   and two people in an encrypted conversation: Alice sends `--room-messages` messages
   through the composer (each encrypted in her browser), then Bob opens the room. Prints
   how long Bob's page takes until every message is decrypted (his device has none of
   them yet: it decrypts all of them, in order), and again after a reload (read from what
   the device kept).

    .venv/bin/python bench/e2ee.py                       # 200 messages, a room of 500
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CRYPTO_ONLY = """async ([count, text]) => {
  const mls = await import("/static/vendor/ts-mls-1.6.4/ts-mls.esm.js");
  const suite = mls.getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519");
  const cs = await mls.getCiphersuiteImpl(suite);
  const enc = new TextEncoder();
  const member = (name) => mls.generateKeyPackage(
    {credentialType: "basic", identity: enc.encode(name)},
    mls.defaultCapabilities(), mls.defaultLifetime, [], cs);
  const wire = (sent) => mls.encodeMlsMessage(
    {privateMessage: sent.privateMessage, wireformat: "mls_private_message", version: "mls10"});
  const a = await member("a"), b = await member("b");
  let ga = await mls.createGroup(enc.encode("bench"), a.publicPackage, a.privatePackage, [], cs);
  const add = {proposalType: "add", add: {keyPackage: b.publicPackage}};
  const commit = await mls.createCommit(
    {state: ga, cipherSuite: cs}, {extraProposals: [add], ratchetTreeExtension: true});
  ga = commit.newState;
  let gb = await mls.joinGroup(
    commit.welcome, b.publicPackage, b.privatePackage, mls.emptyPskIndex, cs);
  const encryptMs = [], decryptMs = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    let t = performance.now();
    const sent = await mls.createApplicationMessage(ga, enc.encode(`${text} ${i}`), cs);
    const data = wire(sent);
    encryptMs.push(performance.now() - t);
    bytes = data.length;
    ga = sent.newState;
    t = performance.now();
    const message = mls.decodeMlsMessage(data, 0)[0].privateMessage;
    const got = await mls.processPrivateMessage(gb, message, mls.emptyPskIndex, cs);
    decryptMs.push(performance.now() - t);
    gb = got.newState;
  }
  return {encryptMs, decryptMs, bytes};
}"""

ALL_SHOWN = """(count) => {
  const bodies = document.querySelectorAll("#messages .message__body--e2ee");
  return bodies.length >= count && [...bodies].every((b) => b.dataset.e2eeShown);
}"""

TEXT = "Shall we meet at the station at half past six, or is that too early for everyone?"


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values):.2f} ms, p95 {p95:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=200, help="messages for the library alone")
    parser.add_argument("--room-messages", type=int, default=500, help="messages in the room Bob opens")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _live_server, sign_up

    # Sending hundreds of messages in a minute: the per-person message limits are off here.
    extra = {"RATE_MESSAGES_PER_10_SECONDS": "0", "RATE_MESSAGES_PER_HOUR": "0"}
    with (
        tempfile.TemporaryDirectory(prefix="calpico-bench-e2ee-") as var_dir,
        _live_server(Path(var_dir), extra) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        contexts = [browser.new_context(base_url=url) for _ in range(2)]
        for context in contexts:
            context.set_default_timeout(120_000)
        alice, bob = (context.new_page() for context in contexts)

        alice.goto("/")
        result = alice.evaluate(CRYPTO_ONLY, [args.messages, TEXT])
        print(
            f"MLS library alone, {args.messages} messages of {len(TEXT)} characters"
            f" ({result['bytes']} bytes sent):"
        )
        print(f"  encrypt: {quantiles(result['encryptMs'])}")
        print(f"  decrypt: {quantiles(result['decryptMs'])}")

        sign_up(alice, "alice", "Alice")
        sign_up(bob, "bob", "Bob")
        alice.goto("/u/bob/")
        alice.get_by_role("button", name="Start an encrypted conversation").click()
        expect(alice).to_have_url(re.compile(r"/r/\d+/$"))
        room = alice.url
        bob.goto(room)
        bob.get_by_role("button", name="Accept").click()
        expect(bob.locator("#e2ee-status")).to_contain_text("Only the people in this conversation")
        bob.close()

        textarea = alice.locator("#composer textarea")
        started = time.perf_counter()
        for i in range(args.room_messages):
            textarea.fill(f"{TEXT} ({i})")
            textarea.press("Enter")
            expect(textarea).to_have_value("")
        sending = time.perf_counter() - started
        print(
            f"Alice sent {args.room_messages} messages through the composer:"
            f" {sending / args.room_messages * 1000:.0f} ms each"
        )
        print("  (encrypt, post, and the server's answer; the page syncs the group before each send)")

        for label in ("cold: decrypts every message, in order", "warm: a reload, from what the device kept"):
            bob = contexts[1].new_page()
            started = time.perf_counter()
            bob.goto(room)
            bob.wait_for_function(ALL_SHOWN, arg=min(args.room_messages, 50), timeout=600_000)
            bob.wait_for_function("() => window.calpicoE2ee && window.calpicoE2ee.lastSyncMs !== undefined")
            elapsed = time.perf_counter() - started
            sync_ms = bob.evaluate("() => window.calpicoE2ee.lastSyncMs")
            print(f"Bob opens the room of {args.room_messages} messages, {label}:")
            print(
                f"  page load to the shown messages decrypted: {elapsed * 1000:.0f} ms"
                f" (sync {sync_ms:.0f} ms)"
            )
            bob.close()
        browser.close()


if __name__ == "__main__":
    main()
