"""End-to-end encrypted conversations in Chromium (docs/e2ee.md): two people, then a second
browser of one of them, exchanging MLS-encrypted messages through a real server whose
database the test reads to see that it holds only ciphertext."""

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PASSWORD,
    PROJECT_DIR,
    VIEWPORT,
    Person,
    RestartableApp,
    _migrate,
    _server_env,
    _throwaway_database,
    sign_up,
)
from tests.browser.test_composer import press_enter_twice
from tests.browser.test_reactions import log_in

pytestmark = pytest.mark.browser

# Key generation, group setup and a poll for the Welcome (4 s) on a loaded machine.
SETUP = 30_000
SHOTS = PROJECT_DIR.parent / "shots" if (PROJECT_DIR.parent / "shots").is_dir() else None


@pytest.fixture
def app(tmp_path) -> Iterator[RestartableApp]:
    """A server of this test's own, whose database the test reads with manage.py."""
    var_dir = tmp_path / "calpico_var"
    var_dir.mkdir()
    with _throwaway_database(os.environ.get("DATABASE_URL", "").strip()) as database_url:
        env = _server_env(var_dir, database_url)
        _migrate(env)
        server = RestartableApp(env, var_dir)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def django_shell(app: RestartableApp, code: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=PROJECT_DIR,
        env=app.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def room_bodies(app: RestartableApp, room_id: int) -> list[dict]:
    code = (
        "import json; from rooms.models import Message; "
        f"print(json.dumps(list(Message.objects.filter(room_id={room_id}).order_by('seq')"
        ".values('seq', 'kind', 'body', 'html'))))"
    )
    return json.loads(django_shell(app, code).strip().splitlines()[-1])


# Accepting a message request makes the other page's socket resume a room it was not
# subscribed to; main does this in any direct room (not this feature's), reported apart.
KNOWN_WARNING = "resume needs this page's room"


class Browser:
    """Contexts on the app, each watched for console errors."""

    def __init__(self, browser, app: RestartableApp) -> None:
        self.browser = browser
        self.app = app
        self.contexts = []
        self.errors: list[str] = []

    def page(self, width: int = VIEWPORT["width"], locale: str = "en-US") -> Page:
        context = self.browser.new_context(
            base_url=self.app.url, viewport={"width": width, "height": 800}, locale=locale
        )
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda m: (
                m.type in ("error", "warning")
                and KNOWN_WARNING not in m.text
                and self.errors.append(f"{page.url}: {m.text}")
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page

    def person(self, username: str, name: str) -> Person:
        page = self.page()
        sign_up(page, username, name)
        return Person(page, username, name)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def people(browser, app) -> Iterator[Browser]:
    b = Browser(browser, app)
    try:
        yield b
    finally:
        b.close()


def bodies(page: Page):
    return page.locator("#messages article.message .message__body--e2ee")


def send(page: Page, text: str) -> None:
    textarea = page.locator("#composer textarea")
    textarea.fill(text)
    textarea.press("Enter")
    expect(textarea).to_have_value("", timeout=SETUP)
    expect(bodies(page).filter(has_text=text)).to_have_count(1, timeout=SETUP)


def ready(page: Page) -> None:
    expect(page.locator("#e2ee-status")).to_contain_text(
        "Only the people in this conversation", timeout=SETUP
    )


def shot(page: Page, name: str) -> None:
    if SHOTS is not None:
        page.screenshot(path=SHOTS / f"e2ee-{name}.png", animations="disabled")


def start_encrypted(alice: Person, bob: Person, button: str = "Start an encrypted conversation") -> int:
    alice.page.goto(f"/u/{bob.username}/")
    shot(alice.page, "profile-1280")
    alice.page.get_by_role("button", name=button).click()
    expect(alice.page).to_have_url(re.compile(r"/r/\d+/$"))
    return int(re.search(r"/r/(\d+)/$", alice.page.url).group(1))


def test_two_people_exchange_encrypted_messages_the_database_holds_only_ciphertext(people, app):
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    expect(alice.page.locator("#room-title .lock-icon")).to_be_visible()
    expect(alice.page.locator("#e2ee-status")).to_contain_text("End-to-end encrypted", timeout=SETUP)

    # Bob opens it (a message request: they share no group); his browser becomes a device,
    # Alice's adds it to the group, and both can read what the other sends.
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    expect(
        alice.page.locator(".message--system").filter(has_text="Bob Builder added a new device")
    ).to_be_visible()
    send(alice.page, "The treasure is under the old oak")
    expect(bodies(bob.page).filter(has_text="The treasure is under the old oak")).to_be_visible(timeout=SETUP)
    send(bob.page, "Got it, see you there")
    expect(bodies(alice.page).filter(has_text="Got it, see you there")).to_be_visible(timeout=SETUP)

    # A reply: the draft stays in the page (a plain room sends it along to keep it), and
    # the reply goes out encrypted, quoting "Encrypted message".
    sent: list[str] = []
    bob.page.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))
    bob.page.locator("#composer textarea").fill("my unsent draft")
    mine = bob.page.locator("#messages article.message").filter(has_text="The treasure is under")
    mine.hover()
    mine.get_by_role("link", name="Reply").click()
    expect(bob.page.locator(".composer__reply")).to_contain_text("Encrypted message")
    expect(bob.page.locator("#composer textarea")).to_have_value("my unsent draft")
    bob.page.locator("#composer textarea").press("Enter")
    expect(bodies(alice.page).filter(has_text="my unsent draft")).to_be_visible(timeout=SETUP)
    # The server's quote says "Encrypted message"; the page puts the decrypted text in.
    expect(alice.page.locator(".message__quote").last).to_contain_text("The treasure is under the old oak")
    assert sent and not [s for s in sent if "unsent" in s]

    # The sidebar says "Encrypted message", never the text.
    expect(alice.page.locator(f"#sidebar-preview-{room_id}")).to_contain_text("Encrypted message")
    expect(alice.page.locator(f"#sidebar-title-{room_id} .lock-icon")).to_be_attached()

    # After a reload each side still shows the text: kept on the device, not decrypted twice.
    bob.page.reload()
    expect(bodies(bob.page).filter(has_text="The treasure is under the old oak")).to_be_visible(timeout=SETUP)
    bob.page.set_viewport_size({"width": 390, "height": 800})
    shot(bob.page, "room-390")
    bob.page.set_viewport_size({"width": 1280, "height": 800})

    # The database holds ciphertext only: MLS private messages, never the words.
    rows = room_bodies(app, room_id)
    encrypted = [row for row in rows if row["kind"] == "encrypted"]
    assert len(encrypted) == 3
    for row in encrypted:
        assert base64.b64decode(row["body"])[:4] == b"\x00\x01\x00\x02"
        assert row["html"] == ""
    dump = json.dumps(rows)
    assert (
        "treasure" not in dump and "oak" not in dump and "see you there" not in dump and "draft" not in dump
    )

    # Safety numbers: the same 60 digits on both screens; Bob marks the conversation verified.
    alice.page.locator("#e2ee-verify summary").click()
    bob.page.locator("#e2ee-verify summary").click()
    number = alice.page.locator("#e2ee-safety-number")
    expect(number).to_have_text(re.compile(r"^(\d{5} ){11}\d{5}$"))
    expect(bob.page.locator("#e2ee-safety-number")).to_have_text(number.inner_text())
    bob.page.get_by_role("button", name="Mark as verified").click()
    expect(bob.page.locator("#e2ee-verified-mark")).to_be_visible()
    shot(alice.page, "room-1280")

    # A ciphertext changed on the server is shown as an error, never as text.
    bob.page.close()
    alice_sent = "Bring the map"
    send(alice.page, alice_sent)
    django_shell(
        app,
        "import base64; from rooms.models import Message; "
        f"m = Message.objects.filter(room_id={room_id}, kind='encrypted').order_by('-seq').first(); "
        "raw = bytearray(base64.b64decode(m.body)); raw[-5] ^= 1; "
        "m.body = base64.b64encode(bytes(raw)).decode(); m.save(update_fields=['body'])",
    )
    bob_page = people.contexts[1].new_page()
    bob_page.goto(f"/r/{room_id}/")
    broken = bodies(bob_page).last
    expect(broken).to_contain_text("Couldn't decrypt this message.", timeout=SETUP)
    expect(broken).to_contain_text("altered")
    expect(broken).not_to_contain_text(alice_sent)
    expect(bodies(bob_page).filter(has_text="Got it, see you there")).to_be_visible()

    # The assistant stays out, and the settings say why.
    alice.page.goto(f"/r/{room_id}/settings/")
    expect(alice.page.locator(".e2ee-no-assistant")).to_contain_text("the assistant can't be enabled here")
    expect(alice.page.locator("#assistant-panel form")).to_have_count(0)
    assert people.errors == []


def test_enter_pressed_twice_sends_an_encrypted_message_once(people, app):
    """Each Enter queues an encryption; the second finds the composer moved on (the first
    went through, the composer took the next client_id) and sends nothing: the same text
    encrypted twice would be two messages, whatever their client_id."""
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    expect(alice.page.locator("#e2ee-status")).to_contain_text("End-to-end encrypted", timeout=SETUP)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    expect(
        alice.page.locator(".message--system").filter(has_text="Bob Builder added a new device")
    ).to_be_visible()
    textarea = alice.page.locator("#composer textarea")
    textarea.fill("Only once, please")
    press_enter_twice(alice.page)
    expect(bodies(bob.page).filter(has_text="Only once, please")).to_have_count(1, timeout=SETUP)
    expect(textarea).to_have_value("")
    send(alice.page, "And then this")
    expect(bodies(bob.page).filter(has_text="And then this")).to_have_count(1, timeout=SETUP)
    assert len([row for row in room_bodies(app, room_id) if row["kind"] == "encrypted"]) == 2
    expect(bodies(alice.page).filter(has_text="Only once, please")).to_have_count(1)
    assert people.errors == []


def test_a_new_device_joins_cannot_read_earlier_messages_and_a_verified_contact_warns(people, app):
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    ready(alice.page)
    send(alice.page, "Before the second laptop")
    expect(bodies(bob.page).filter(has_text="Before the second laptop")).to_be_visible(timeout=SETUP)
    alice.page.locator("#e2ee-verify summary").click()
    alice.page.get_by_role("button", name="Mark as verified").click()
    expect(alice.page.locator("#e2ee-verified-mark")).to_be_visible()

    # Bob signs in on a second browser: a third context, a new device.
    laptop = people.page(width=390)
    log_in(laptop, bob)
    laptop.goto(f"/r/{room_id}/")
    expect(laptop.locator("#e2ee-status")).to_contain_text("This device joined later", timeout=SETUP)
    expect(
        alice.page.locator(".message--system").filter(has_text="Bob Builder added a new device")
    ).to_have_count(2, timeout=SETUP)
    earlier = bodies(laptop).filter(has_text="Before the second laptop")
    expect(earlier).to_have_count(0)
    expect(bodies(laptop).first).to_contain_text("Sent before this device joined")

    # Alice verified Bob's keys; now they changed: a warning before she sends, until she
    # acknowledges it.
    expect(alice.page.locator("#e2ee-key-change")).to_be_visible(timeout=SETUP)
    textarea = alice.page.locator("#composer textarea")
    textarea.fill("After the second laptop")
    textarea.press("Enter")
    expect(alice.page.locator("#e2ee-key-change")).to_be_visible()
    expect(textarea).to_have_value("After the second laptop")
    shot(alice.page, "key-change-1280")
    alice.page.get_by_role("button", name="I understand, send anyway").click()
    expect(alice.page.locator("#e2ee-key-change")).to_be_hidden()
    textarea.press("Enter")
    expect(textarea).to_have_value("", timeout=SETUP)
    for page in (alice.page, bob.page, laptop):
        expect(bodies(page).filter(has_text="After the second laptop")).to_be_visible(timeout=SETUP)
    shot(laptop, "new-device-390")
    assert people.errors == []

    # The laptop's device is retired on the server (past E2EE_MAX_DEVICES): on its next
    # sync it is told so (one 404, in its console), starts again as a new device, and
    # Alice's browser adds it.
    laptop_device = laptop.evaluate(
        """() => new Promise((resolve) => {
            const open = indexedDB.open(`calpico-e2ee-${document.body.dataset.userId}`);
            open.onsuccess = () => {
                const get = open.result.transaction("device").objectStore("device").get("self");
                get.onsuccess = () => resolve(get.result.id);
            };
        })"""
    )
    django_shell(app, f"from e2ee.models import Device; Device.objects.filter(pk='{laptop_device}').delete()")
    laptop.reload()
    expect(
        alice.page.locator(".message--system").filter(has_text="Bob Builder added a new device")
    ).to_have_count(3, timeout=SETUP)
    expect(laptop.locator("#e2ee-status")).to_contain_text(
        "Only the people in this conversation", timeout=SETUP
    )
    send(alice.page, "Welcome back, laptop")
    expect(bodies(laptop).filter(has_text="Welcome back, laptop")).to_be_visible(timeout=SETUP)

    # Bob removes the laptop from the list of devices on his other browser; everyone sees it.
    bob.page.locator("#e2ee-verify summary").click()
    devices = bob.page.locator("#e2ee-devices li")
    expect(devices.filter(has_text="this device")).to_have_count(1)
    bob.page.once("dialog", lambda dialog: dialog.accept())
    devices.filter(has=bob.page.get_by_role("button", name="Remove")).first.get_by_role("button").click()
    expect(
        alice.page.locator(".message--system").filter(has_text="Bob Builder removed a device")
    ).to_be_visible(timeout=SETUP)
    assert [e for e in people.errors if "404" not in e] == []


def test_an_encrypted_group_of_three_and_a_member_removed_from_its_keys(people, app):
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    carol = people.person("carol", "Carol Danvers")
    alice.page.goto("/rooms/new/")
    alice.page.fill("input[name=title]", "Surprise party")
    alice.page.fill("input[name=members]", f"{bob.username} {carol.username}")
    alice.page.get_by_label("End-to-end encrypted").check()
    shot(alice.page, "new-group-1280")
    alice.page.get_by_role("button", name="Create group").click()
    expect(alice.page).to_have_url(re.compile(r"/r/\d+/$"))
    room_id = int(re.search(r"/r/(\d+)/$", alice.page.url).group(1))
    expect(alice.page.locator("#room-title .lock-icon")).to_be_visible()
    expect(alice.page.locator("#private-panel")).to_have_count(0)
    for member in (bob, carol):
        member.page.goto(f"/r/{room_id}/")
        ready(member.page)
    send(alice.page, "Cake at eight, tell nobody")
    for member in (bob, carol):
        expect(bodies(member.page).filter(has_text="Cake at eight")).to_be_visible(timeout=SETUP)
    send(carol.page, "I will bring candles")
    expect(bodies(bob.page).filter(has_text="I will bring candles")).to_be_visible(timeout=SETUP)
    # The lock stays on the title and the sidebar entry as live messages redraw them.
    expect(bob.page.locator("#room-title .lock-icon")).to_be_visible()
    expect(bob.page.locator(f"#sidebar-title-{room_id} .lock-icon")).to_be_visible()
    assert "Surprise party" in bob.page.title() and "encrypted" not in bob.page.title()

    # The group's safety number is the same on every screen.
    numbers = []
    for member in (alice, bob, carol):
        member.page.locator("#e2ee-verify summary").click()
        numbers.append(member.page.locator("#e2ee-safety-number").inner_text())
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", numbers[0]) and numbers.count(numbers[0]) == 3
    shot(bob.page, "group-1280")

    # Carol is removed: the next send takes her device out of the group first, so what
    # follows is encrypted for Alice's and Bob's devices only (a new safety number for both).
    carol_id = carol.page.evaluate("() => document.body.dataset.userId")
    # (Her page would ask for the group's news once more and get the 404 a non-member gets.)
    carol.page.close()
    status = alice.page.evaluate(
        """async ([url, id]) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const body = new URLSearchParams({user_id: id});
            return (await fetch(url, {method: "POST", body, headers: {"X-CSRFToken": token}})).status;
        }""",
        [f"/r/{room_id}/settings/remove/", carol_id],
    )
    assert status in (200, 302)
    send(alice.page, "Carol is out of the loop now")
    expect(bodies(bob.page).filter(has_text="Carol is out of the loop now")).to_be_visible(timeout=SETUP)
    after = alice.page.locator("#e2ee-safety-number")
    expect(after).not_to_have_text(numbers[0])
    expect(bob.page.locator("#e2ee-safety-number")).to_have_text(after.inner_text(), timeout=SETUP)
    rows = room_bodies(app, room_id)
    assert "Cake" not in json.dumps(rows) and "loop" not in json.dumps(rows)
    assert people.errors == []


def test_in_french_the_encrypted_room_speaks_french(people, app):
    amelie_page = people.page(locale="fr-FR")
    amelie_page.goto("/accounts/signup/")
    amelie_page.fill("input[name=username]", "amelie")
    amelie_page.fill("input[name=password1]", PASSWORD)
    amelie_page.fill("input[name=password2]", PASSWORD)
    amelie_page.locator("form button[type=submit]").click()
    expect(amelie_page).to_have_url(re.compile(r"/settings/profile/$"))
    amelie = Person(amelie_page, "amelie", "amelie")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(amelie, bob, button="Démarrer une conversation chiffrée")
    expect(amelie.page.locator("#e2ee-status")).to_contain_text("Chiffré de bout en bout", timeout=SETUP)
    textarea = amelie.page.locator("#composer textarea")
    textarea.fill("Bonjour")
    textarea.press("Enter")
    # Bob has no device yet: nobody could read it, and the page says so, in French.
    expect(amelie.page.locator("#e2ee-status")).to_contain_text("Personne d’autre", timeout=SETUP)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    send(amelie.page, "Bonjour Bob")
    expect(bodies(bob.page).filter(has_text="Bonjour Bob")).to_be_visible(timeout=SETUP)
    expect(amelie.page.locator(f"#sidebar-preview-{room_id}")).to_contain_text("Message chiffré")
    expect(amelie.page.locator(".message--system").last).to_contain_text("a ajouté un nouvel appareil")
    amelie.page.locator("#e2ee-verify summary").click()
    expect(amelie.page.locator("#e2ee-verify")).to_contain_text("Comparez ce numéro de sécurité")
    shot(amelie.page, "french-1280")
    assert people.errors == []


def test_without_the_encryption_module_the_composer_sends_nothing_it_was_typed(people, app):
    """No JavaScript for encryption (blocked, not loaded yet, or failing): Enter still sends
    the composer through htmx, and what was typed must not go with it."""
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    alice.page.context.route(re.compile(r".*/e2ee(\.[0-9a-f]+)?\.js$"), lambda route: route.abort())
    sent: list[str] = []
    alice.page.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))
    alice.page.goto(f"/r/{room_id}/")
    textarea = alice.page.locator("#composer textarea")
    textarea.fill("the vault code is 4417")
    textarea.press("Enter")
    expect(alice.page.locator("#composer .composer__error")).to_contain_text(
        "only messages encrypted by your browser"
    )
    expect(textarea).to_have_value("the vault code is 4417")  # kept in the page, as after any refusal
    assert any("/post/" in s or "/messages/" in s for s in sent), sent
    assert not [s for s in sent if "4417" in s]
    assert "4417" not in json.dumps(room_bodies(app, room_id))


def test_a_device_whose_key_packages_were_all_claimed_uploads_new_ones(people, app):
    """Claims that never became a Welcome (a lost commit race, or a member claiming on
    purpose) leave the private halves in the browser: the browser tops up from the server's
    count, so its device can still be added to conversations."""
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    ready(alice.page)
    count = (
        "from e2ee.models import KeyPackage; "
        "print(KeyPackage.objects.filter(device__user__username='bob', claimed_at__isnull=True).count())"
    )
    django_shell(
        app,
        "from django.utils import timezone; from e2ee.models import KeyPackage; "
        "KeyPackage.objects.filter(device__user__username='bob').update(claimed_at=timezone.now())",
    )
    assert django_shell(app, count).strip().splitlines()[-1] == "0"
    bob.page.reload()
    ready(bob.page)
    assert django_shell(app, count).strip().splitlines()[-1] == "5"
    assert people.errors == []


def test_a_message_the_server_repeats_or_puts_under_someone_else_is_not_shown_as_text(people, app):
    """The server places and names messages: a ciphertext it posts again, or shows under
    another member, must not be shown as that member's words (the sender is inside the
    ciphertext, the decrypted text is kept with its place in the room)."""
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    ready(alice.page)
    send(alice.page, "Meet at noon")
    send(alice.page, "Only Alice says this")
    expect(bodies(bob.page).filter(has_text="Only Alice says this")).to_be_visible(timeout=SETUP)
    django_shell(
        app,
        "from rooms.models import Message, Membership; from rooms.services import do_post_message; "
        "from accounts.models import User; "
        f"first = Message.objects.filter(room_id={room_id}, kind='encrypted').order_by('seq').first(); "
        f"do_post_message(Membership.objects.get(room_id={room_id}, user__username='alice'), first.body); "
        f"last = Message.objects.filter(room_id={room_id}, kind='encrypted', seq__gt=first.seq)"
        ".order_by('seq').first(); "
        "Message.objects.filter(pk=last.pk).update(author=User.objects.get(username='bob'))",
    )
    page = people.contexts[1].new_page()
    page.goto(f"/r/{room_id}/")
    ready(page)
    expect(bodies(page).filter(has_text="Meet at noon")).to_have_count(1, timeout=SETUP)
    expect(bodies(page).filter(has_text="repeats an earlier encrypted message")).to_have_count(1)
    expect(bodies(page).filter(has_text="shown under someone other")).to_have_count(1)
    expect(bodies(page).filter(has_text="Only Alice says this")).to_have_count(0)
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "replayed-390")
    assert people.errors == []


def test_the_devices_listed_are_the_groups_under_the_person_their_keys_name(people, app):
    """A server in between could list one device as Bob's to Alice and as Alice's to Bob:
    both would see the same safety number. The list is the group's own leaves, each under
    the person its credential names, and a device the server describes otherwise is
    flagged."""
    alice = people.person("alice", "Alice Liddell")
    bob = people.person("bob", "Bob Builder")
    room_id = start_encrypted(alice, bob)
    bob.page.goto(f"/r/{room_id}/")
    bob.page.get_by_role("button", name="Accept").click()
    ready(bob.page)
    ready(alice.page)

    def relabel(route):
        response = route.fetch()
        data = response.json()
        me = next(d for d in data["devices"] if d["user_name"] == "Bob Builder")
        for d in data["devices"]:
            d["user_id"], d["user_name"] = me["user_id"], me["user_name"]
        route.fulfill(response=response, json=data)

    page = people.contexts[1].new_page()
    page.route(re.compile(r".*/e2ee/r/\d+/state/.*"), relabel)
    page.goto(f"/r/{room_id}/")
    ready(page)
    page.locator("#e2ee-verify summary").click()
    devices = page.locator("#e2ee-devices li")
    expect(devices).to_have_count(2)
    expect(devices.filter(has_text="Bob Builder")).to_have_count(1)
    expect(devices.filter(has_text="(this device)")).to_have_count(1)
    expect(devices.filter(has_text="does not list this device as this person's")).to_have_count(1)
    shot(page, "devices-flagged-1280")
    # Untouched, the list names each device's owner.
    bob.page.locator("#e2ee-verify summary").click()
    expect(bob.page.locator("#e2ee-devices li").filter(has_text="Alice Liddell")).to_have_count(1)
    expect(bob.page.locator("#e2ee-devices .e2ee-devices__unknown")).to_have_count(0)
    assert people.errors == []
