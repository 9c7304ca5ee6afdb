"""Calpico installed and notifying while closed, in Chromium: the app is installable, the
service worker registers, a direct message reaches Bob's device through the push service
(tests/fake_push.py, which decrypts it) and the worker shows it, and clicking it opens the
room at the message."""

import json
import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    Person,
    _live_server,
    _page_opener,
    _person_factory,
    sign_up,
)
from tests.browser.test_live import create_group, send, wait_connected
from tests.browser.test_reactions import log_in
from tests.fake_push import FakePushService

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def push_service() -> Iterator[FakePushService]:
    with FakePushService() as service:
        yield service


@pytest.fixture(scope="module")
def push_app(tmp_path_factory, push_service) -> Iterator[str]:
    """Calpico allowed to send to the fake push service on 127.0.0.1."""
    extra = {"PUSH_SERVICE_HOSTS": "127.0.0.1", "JOBS_POLL_SECONDS": "0.2"}
    with _live_server(tmp_path_factory.mktemp("calpico_push_var"), extra) as url:
        yield url


@pytest.fixture
def person(browser, push_app):
    with _page_opener(browser, push_app) as open_page:
        yield _person_factory(open_page)


@pytest.fixture
def installed(browser, push_app, tmp_path):
    """A browser profile on disk, as a person's own Chromium (an incognito context, what
    new_context gives, can neither install apps nor keep push subscriptions): sign someone up in it."""
    context = browser.browser_type.launch_persistent_context(
        tmp_path / "profile",
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        base_url=push_app,
        viewport=VIEWPORT,
    )
    context.set_default_timeout(10_000)

    def sign_up_here(first_name: str, display_name: str) -> Person:
        page = context.pages[0] if context.pages else context.new_page()
        username = f"{first_name}_{secrets.token_hex(3)}"
        sign_up(page, username, display_name)
        return Person(page, username, display_name)

    yield sign_up_here
    context.close()


READY = "navigator.serviceWorker.ready.then((r) => r.active.scriptURL)"


def subscribe_with(page, subscription: dict) -> dict:
    """What static/js/push.js posts once PushManager.subscribe() answered: this browser's
    subscription (here one the fake push service made, whose keys it can decrypt with)."""
    return page.evaluate(
        """async (subscription) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
            const response = await fetch("/settings/notifications/devices/", {
                method: "POST", body: JSON.stringify(subscription), credentials: "same-origin",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
            return {status: response.status, body: await response.json()};
        }""",
        subscription,
    )


def test_calpico_is_installable_with_its_service_worker(installed):
    alice = installed("alice", "Alice Liddell")
    page = alice.page
    page.goto("/rooms/")
    assert page.evaluate(READY).endswith("/sw.js")
    session = page.context.new_cdp_session(page)
    assert session.send("Page.getInstallabilityErrors") == {"installabilityErrors": []}
    manifest = session.send("Page.getAppManifest")
    assert manifest["errors"] == []
    assert json.loads(manifest["data"])["name"] == "Calpico"


def test_a_browser_that_refuses_notifications_leaves_the_switch_off_and_says_why(installed):
    bob = installed("bob", "Bob")
    page = bob.page
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.context.clear_permissions()  # headless Chromium answers "denied" to the prompt
    page.goto("/settings/notifications/")
    switch = page.get_by_label("Notify this device when Calpico is closed")
    expect(switch).to_be_enabled()
    # click, not check(): the page may already have put the switch back (the refusal came
    # at once), which check() takes for a click that did nothing.
    switch.click()
    expect(page.locator("#push-status")).to_have_text(
        "Your browser blocks notifications from this site; allow them in its site settings first."
    )
    expect(switch).not_to_be_checked()
    expect(page.locator("#push-devices")).to_contain_text("No device gets notifications yet.")
    assert errors == []


def test_the_offline_page_shows_without_a_network(person):
    alice = person("alice", "Alice Liddell")
    page = alice.page
    page.goto("/rooms/")
    page.evaluate(READY)
    page.reload()  # now controlled by the worker
    page.context.set_offline(True)
    try:
        page.goto("/rooms/")
        expect(page.get_by_role("heading", name="You're offline")).to_be_visible()
    finally:
        page.context.set_offline(False)


def test_a_direct_message_is_shown_while_calpico_is_closed_and_opens_the_room(
    person, installed, push_service, push_app
):
    alice = person("alice", "Alice Liddell")
    bob = installed("bob", "Bob")
    bob.page.context.grant_permissions(["notifications"])
    create_group(alice, f"Trip {secrets.token_hex(2)}", [bob])

    # Bob turns notifications on for his browser, then closes Calpico.
    bob.page.goto("/settings/notifications/")
    bob.page.evaluate(READY)
    expect(bob.page.locator("#push-device")).to_be_enabled()
    subscription = push_service.subscription()
    answer = subscribe_with(bob.page, subscription)
    assert answer["status"] == 200, answer
    bob.page.reload()
    expect(bob.page.locator("#push-devices")).to_contain_text("Chrome on Linux")
    context = bob.page.context
    blank = context.new_page()
    bob.page.close()

    # Alice writes to him directly.
    alice.page.goto(f"/u/{bob.username}/")
    alice.page.get_by_role("button", name="Message").click()
    expect(alice.page).to_have_url(re.compile(r"/r/\d+/$"))
    room_id = int(re.search(r"/r/(\d+)/$", alice.page.url).group(1))
    wait_connected(alice.page)
    push_service.reset()
    send(alice.page, "Dinner at eight?")

    # The push service got it, encrypted to Bob's browser; it hands it to the browser.
    [delivery] = push_service.wait_for(1, timeout=20)
    assert delivery.payload["title"] == "Alice Liddell"
    assert delivery.payload["body"] == "Dinner at eight?"
    assert re.fullmatch(rf"/r/{room_id}/m/\d+/", delivery.payload["url"])
    cdp = context.new_cdp_session(blank)
    registrations = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"])
    )
    cdp.send("ServiceWorker.enable")
    blank.wait_for_timeout(200)
    origin = push_app
    [registration] = [r for r in registrations if not r["isDeleted"] and r["scopeURL"] == origin + "/"]
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": origin,
            "registrationId": registration["registrationId"],
            "data": delivery.plaintext.decode(),
        },
    )
    # Bob's browser has a Calpico window again (any page of the site, here the offline one).
    blank.goto("/offline/")
    shown = []
    for _ in range(100):
        shown = blank.evaluate(
            """navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((shown) =>
                shown.map((n) => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url})))"""
        )
        if shown:
            break
        blank.wait_for_timeout(100)
    assert shown == [
        {
            "title": "Alice Liddell",
            "body": "Dinner at eight?",
            "tag": f"calpico-room-{room_id}",
            "url": delivery.payload["url"],
        }
    ]

    # He clicks it: the open window goes to the message. (The click's handler is called
    # as Chromium would; a synthetic NotificationEvent cannot be made in a test.)
    worker = context.service_workers[-1]
    worker.evaluate(
        """(url) => new Promise((resolve, reject) => onNotificationClick({
            notification: {data: {url}, close() {}},
            waitUntil(promise) { promise.then(resolve, reject); },
        }))""",
        delivery.payload["url"],
    )
    expect(blank).to_have_url(re.compile(re.escape(delivery.payload["url"]) + "$"))
    # Never another site, whatever a payload says.
    assert worker.evaluate("sameOriginPath('https://evil.example/r/1/')") == "/rooms/"
    assert worker.evaluate("sameOriginPath('//evil.example/x')") == "/rooms/"
    expect(blank.locator(".message").filter(has_text="Dinner at eight?")).to_have_count(1)


def fake_subscription_script(subscription: dict) -> str:
    """This browser's push subscription as its push service would have made it (headless
    Chromium cannot reach Google's): what PushManager.getSubscription() answers to pages."""
    return f"""(() => {{
        const data = {json.dumps(subscription)};
        const fake = {{endpoint: data.endpoint, options: {{applicationServerKey: null}},
                      toJSON: () => data, unsubscribe: async () => true}};
        PushManager.prototype.getSubscription = async function () {{ return fake; }};
    }})()"""


def deliver_push(context, origin: str, data: dict) -> None:
    """Hand a push to the browser's Calpico worker, as its push service would."""
    blank = context.new_page()
    cdp = context.new_cdp_session(blank)
    registrations: list[dict] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"])
    )
    cdp.send("ServiceWorker.enable")
    blank.wait_for_timeout(200)
    [registration] = [r for r in registrations if not r["isDeleted"] and r["scopeURL"] == origin + "/"]
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": origin, "registrationId": registration["registrationId"], "data": json.dumps(data)},
    )
    # The worker handles it while DevTools is attached (closing at once could lose it).
    blank.wait_for_timeout(1000)
    blank.close()


SHOWN = """navigator.serviceWorker.ready.then((r) => r.getNotifications())
    .then((shown) => shown.map((n) => n.title))"""


def wait_shown(page, titles: list[str]) -> None:
    """Until the notifications this browser shows are `titles`."""
    for _ in range(150):
        if page.evaluate(SHOWN) == titles:
            break
        page.wait_for_timeout(100)
    assert page.evaluate(SHOWN) == titles


PERSON = """caches.open("calpico-person").then((c) => c.match("/sw/person"))
    .then((r) => (r ? r.text() : ""))"""


def test_a_browser_someone_else_signs_in_on_stops_notifying_the_last_person(
    browser, installed, push_service, push_app
):
    """Alice's session ended without signing out (cookies cleared); Bob signs in on her
    browser. His first page has the server forget her device, and the worker drops a push
    for her still on its way. The console stays clean."""
    alice = installed("alice", "Alice Liddell")
    page = alice.page
    context = page.context
    context.grant_permissions(["notifications"])
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    subscription = push_service.subscription()
    context.add_init_script(fake_subscription_script(subscription))
    page.goto("/settings/notifications/")
    page.evaluate(READY)
    assert subscribe_with(page, subscription)["status"] == 200
    page.reload()
    expect(page.locator("#push-devices")).to_contain_text("Chrome on Linux")
    alice_id = page.evaluate("document.body.dataset.userId")
    for _ in range(50):
        if page.evaluate(PERSON) == alice_id:
            break
        page.wait_for_timeout(100)
    assert page.evaluate(PERSON) == alice_id
    # A push shown to Alice before she left: it does not stay on Bob's screen.
    deliver_push(context, push_app, {"to": int(alice_id), "title": "Shown to Alice", "tag": "s"})
    wait_shown(page, ["Shown to Alice"])

    context.clear_cookies()
    confirmed: list[dict] = []
    page.on(
        "requestfinished",
        lambda request: (
            confirmed.append(json.loads(request.post_data or "{}"))
            if request.url.endswith("/settings/notifications/devices/")
            else None
        ),
    )
    installed("bob", "Bob")
    bob_id = page.evaluate("document.body.dataset.userId")
    assert bob_id and bob_id != alice_id
    for _ in range(50):
        if confirmed and page.evaluate(PERSON) == bob_id:
            break
        page.wait_for_timeout(100)
    # The page proved it holds the subscription (its keys): the server forgot Alice's device.
    assert confirmed[0]["confirm"] is True
    assert confirmed[0]["keys"] == subscription["keys"]
    assert page.evaluate(PERSON) == bob_id
    wait_shown(page, [])
    elsewhere = browser.new_context(base_url=push_app)
    try:
        alices = elsewhere.new_page()
        log_in(alices, alice)
        alices.goto("/settings/notifications/")
        expect(alices.locator("#push-devices")).to_contain_text("No device gets notifications yet.")
    finally:
        elsewhere.close()

    # A push for Alice that was still on its way is not shown to Bob; one for Bob is.
    deliver_push(context, push_app, {"to": int(alice_id), "title": "For Alice", "tag": "a"})
    deliver_push(context, push_app, {"to": int(bob_id), "title": "For Bob", "tag": "b"})
    shown: list[str] = []
    for _ in range(100):
        shown = page.evaluate(SHOWN)
        if shown:
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    assert page.evaluate(SHOWN) == ["For Bob"]
    assert problems == []


def test_after_signing_out_no_push_for_the_person_is_shown(installed, push_app):
    """A push sent before Bob signed out (it waited at the push service while his browser
    was offline) is not shown to whoever uses the browser next."""
    bob = installed("bob", "Bob")
    page = bob.page
    page.context.grant_permissions(["notifications"])
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto("/rooms/")
    page.evaluate(READY)
    bob_id = page.evaluate("document.body.dataset.userId")
    for _ in range(50):
        if page.evaluate(PERSON) == bob_id:
            break
        page.wait_for_timeout(100)
    assert page.evaluate(PERSON) == bob_id
    # What Bob was shown (message text and all) goes with him.
    deliver_push(page.context, push_app, {"to": int(bob_id), "title": "Shown to Bob", "tag": "s"})
    wait_shown(page, ["Shown to Bob"])
    with page.expect_navigation():
        page.evaluate("document.querySelector(`form[action='/accounts/logout/']`).requestSubmit()")
    assert page.evaluate("document.body.dataset.userId") == ""
    assert page.evaluate(PERSON) == "-"
    assert page.evaluate(SHOWN) == []
    deliver_push(page.context, push_app, {"to": int(bob_id), "title": "For Bob", "tag": "b"})
    # Nor one saying nothing of whom it is for (recorded before pushes said so): nobody is
    # signed in here, it was for whoever signed out.
    deliver_push(page.context, push_app, {"title": "Older push", "tag": "o"})
    page.wait_for_timeout(1000)
    assert page.evaluate(SHOWN) == []
    # Someone signing in here next is notified again.
    log_in(page, bob)
    for _ in range(50):
        if page.evaluate(PERSON) == bob_id:
            break
        page.wait_for_timeout(100)
    deliver_push(page.context, push_app, {"to": int(bob_id), "title": "Back", "tag": "b"})
    wait_shown(page, ["Back"])
    assert problems == []
