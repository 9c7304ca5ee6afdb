"""Read receipts, grouped messages and the "New messages" line in a real browser: "Seen"
appears on the sender's page when the other person reads, without a reload; a group shows
the faces of who has read my latest message; consecutive messages share one header."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_live import LIVE, create_group, messages, open_direct_room, send, wait_connected

pytestmark = pytest.mark.browser

# A read travels: the reader's page sends it (at most every 2 s), their socket writes it (every
# 3 s), then the room is told.
READ = 8_000
PHONE = {"width": 390, "height": 844}
AT_BOTTOM = "el => Math.abs(el.scrollHeight - el.clientHeight - el.scrollTop)"


@pytest.fixture
def console():
    """Every console error and warning and uncaught error of the pages given to `watch`;
    asserted empty at the end of the test."""
    problems: list[str] = []

    def watch(*pages: Page) -> None:
        for page in pages:
            page.on(
                "console",
                lambda message: (
                    message.type in ("error", "warning")
                    and problems.append(f"{message.page.url}: {message.type}: {message.text}")
                ),
            )
            page.on("pageerror", lambda error: problems.append(str(error)))

    yield watch
    assert not problems, "\n".join(problems)


def shoot(page: Page, screenshot, name: str) -> None:
    """The page at desktop width, then on a phone (docs/screenshots/<name>.png, -phone.png)."""
    screenshot(page, name)
    desktop = page.viewport_size
    page.set_viewport_size(PHONE)
    page.evaluate("document.getElementById('history').scrollTop = 1e9")
    screenshot(page, f"{name}-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(desktop)


def test_seen_appears_live_in_a_direct_room(person, screenshot, console):
    """Alice's last message shows "Seen" when Bob opens the room, and again once he reads the
    next one, without Alice reloading; Bob sees no "Seen" under Alice's messages."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    console(alice.page, bob.page)
    create_group(alice, "Book club", [bob])  # so the direct room is no message request
    open_direct_room(alice.page, bob)
    wait_connected(alice.page)
    alice.page.evaluate("window.stillTheSamePage = true")
    send(alice.page, "Did you finish the book?")
    send(alice.page, "No spoilers please")
    seen = alice.page.locator("#messages .seen")
    expect(seen).to_have_count(0)

    bob.page.goto(alice.page.url)
    wait_connected(bob.page)
    last = messages(alice.page).filter(has_text="No spoilers please")
    expect(last.locator(".seen")).to_have_text("Seen", timeout=LIVE)
    expect(seen).to_have_count(1)
    expect(bob.page.locator("#messages .seen")).to_have_count(0)
    # Two messages moments apart from one person: one header.
    expect(last).to_have_class(re.compile(r"\bmessage--continued\b"))

    send(alice.page, "Chapter 12 is wild")
    newest = messages(alice.page).filter(has_text="Chapter 12 is wild")
    expect(seen).to_have_count(0)
    expect(newest.locator(".seen")).to_have_text("Seen", timeout=READ)
    send(bob.page, "Almost done, no spoilers!")
    expect(messages(alice.page).filter(has_text="Almost done")).to_have_count(1, timeout=LIVE)
    shoot(alice.page, screenshot, "seen-direct")
    assert alice.page.evaluate("window.stillTheSamePage") is True


def test_a_group_shows_who_has_seen_my_latest_message(person, screenshot, console):
    """In a group, the faces of who has read my latest message, live; a room I open after
    others wrote shows "New messages" above what I had not read; messages group."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    carol = person("carol", "Carol Danvers")
    console(alice.page, bob.page, carol.page)
    url, _ = create_group(alice, "Trip planning", [bob, carol])
    wait_connected(alice.page)
    for text in ["Train or car?", "The train is 40 minutes faster", "And we can play cards"]:
        send(alice.page, text)
    latest = messages(alice.page).filter(has_text="And we can play cards")
    expect(messages(alice.page).filter(has_text="The train is")).to_have_class(
        re.compile(r"\bmessage--continued\b")
    )
    expect(messages(alice.page).filter(has_text="Train or car?")).not_to_have_class(
        re.compile(r"\bmessage--continued\b")
    )

    bob.page.goto(url)
    faces = latest.locator(".seen .seen__face")
    expect(faces).to_have_count(1, timeout=LIVE)
    expect(latest.locator(".seen")).to_have_attribute("title", "Seen by Bob Builder")
    carol.page.goto(url)
    expect(faces).to_have_count(2, timeout=LIVE)
    expect(latest.locator(".seen")).to_have_attribute("title", "Seen by Bob Builder, Carol Danvers")

    # Alice goes elsewhere; Bob and Carol talk; she comes back to a "New messages" line.
    alice.page.goto("/rooms/")
    wait_connected(bob.page)
    send(bob.page, "Train, definitely")
    send(bob.page, "I'll book the tickets tonight")
    send(carol.page, "Cards! I'm in")
    alice.page.goto(url)
    wait_connected(alice.page)
    line = alice.page.locator("#messages #unread-line")
    expect(line.get_by_role("separator")).to_have_text("New messages")
    # Three unread messages: too few for "Catch me up" (CATCH_UP_MIN_UNREAD).
    expect(line.get_by_role("button", name="Catch me up")).to_be_hidden()
    first_unread = alice.page.locator("#unread-line + .message")
    expect(first_unread).to_contain_text("Train, definitely")
    expect(first_unread).not_to_have_class(re.compile(r"\bmessage--continued\b"))
    expect(messages(alice.page).filter(has_text="I'll book the tickets")).to_have_class(
        re.compile(r"\bmessage--continued\b")
    )
    # My latest message is above the line: seen by both.
    expect(latest.locator(".seen .seen__face")).to_have_count(2)

    # A message arriving while I look does not move the line.
    send(bob.page, "Booked!")
    expect(messages(alice.page).filter(has_text="Booked!")).to_have_count(1, timeout=LIVE)
    expect(alice.page.locator("#unread-line + .message")).to_contain_text("Train, definitely")
    # Live-pushed messages group too.
    expect(messages(alice.page).filter(has_text="Booked!")).not_to_have_class(
        re.compile(r"\bmessage--continued\b")
    )  # after Carol's
    send(bob.page, "Seats 14 and 15")
    expect(messages(alice.page).filter(has_text="Seats 14 and 15")).to_have_class(
        re.compile(r"\bmessage--continued\b"), timeout=LIVE
    )
    # A continued message shows its time on hover, where the avatar would be.
    continued = messages(alice.page).filter(has_text="Seats 14 and 15")
    expect(continued.locator(".message__meta time")).to_have_css("opacity", "0")
    continued.hover()
    expect(continued.locator(".message__meta time")).to_have_css("opacity", "1")
    shoot(alice.page, screenshot, "seen-group")


def test_read_receipts_off_hides_them_both_ways(person, screenshot, console):
    """Bob switches read receipts off: Alice no longer sees "Seen" from him, and he sees no
    "Seen" under his own messages either."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    console(alice.page, bob.page)
    create_group(alice, "Book club", [bob])
    open_direct_room(alice.page, bob)
    room_url = alice.page.url
    wait_connected(alice.page)
    send(alice.page, "Are you there?")
    bob.page.goto("/settings/privacy/")
    expect(bob.page.get_by_label("Send read receipts")).to_be_checked()
    bob.page.get_by_label("Send read receipts").uncheck()
    bob.page.get_by_role("button", name="Save").click()
    expect(bob.page.locator(".flash")).to_contain_text("Read receipts are off.")
    screenshot(bob.page, "seen-privacy")

    bob.page.goto(room_url)
    wait_connected(bob.page)
    send(bob.page, "Yes, but quietly")
    expect(messages(alice.page).filter(has_text="Yes, but quietly")).to_have_count(1, timeout=LIVE)
    send(alice.page, "Good")
    alice.page.wait_for_timeout(READ - 2_000)  # long enough for Bob's page to have read it
    expect(alice.page.locator("#messages .seen")).to_have_count(0)
    alice.page.reload()
    expect(alice.page.locator("#messages .seen")).to_have_count(0)
    # Alice reads Bob's messages all along; he is not shown that.
    expect(bob.page.locator("#messages .seen")).to_have_count(0)


def test_more_unread_than_a_screen_opens_at_the_new_messages_line(person, console):
    """Alice comes back to more new messages than fit: the room opens with the line at the
    top, not at the newest message; with fewer, it opens at the newest as before."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    console(alice.page, bob.page)
    url, _ = create_group(alice, "Trip planning", [bob])
    send(alice.page, "What shall we pack?")
    alice.page.goto("/rooms/")
    bob.page.goto(url)
    wait_connected(bob.page)
    for item in ["Clothes", "Food", "Maps"]:
        send(bob.page, "\n".join(f"{item}, line {n}" for n in range(1, 13)))

    alice.page.goto(url)
    wait_connected(alice.page)
    pane = alice.page.locator("#history").bounding_box()
    line = alice.page.locator("#unread-line").bounding_box()
    assert pane["y"] <= line["y"] <= pane["y"] + 60, (pane, line)
    assert alice.page.locator("#history").evaluate(AT_BOTTOM) > 100

    alice.page.goto("/rooms/")
    send(bob.page, "Short one")
    alice.page.goto(url)
    wait_connected(alice.page)
    expect(alice.page.locator("#unread-line")).to_be_visible()
    assert alice.page.locator("#history").evaluate(AT_BOTTOM) < 2
