"""Reactions in a real browser: the quick row on hover, the picker, chips that toggle, who
reacted, all live on the other person's page; a phone's React button and long press; and a
clean console throughout."""

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Person
from tests.browser.test_live import LIVE, Group, create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser

THUMBS_UP = "\U0001f44d\ufe0f"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def group(person) -> Group:
    """Alice and Bob, each on the page of Alice's group "Picnic", connected."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    url, room_id = create_group(alice, "Picnic", [bob])
    bob.page.goto(url)
    wait_connected(alice.page)
    wait_connected(bob.page)
    return Group(alice, bob, url, room_id)


def watch_console(page: Page, who: str, problems: list[str]) -> None:
    page.on(
        "console",
        lambda message: (
            message.type in ("error", "warning")
            and problems.append(f"{who}: console.{message.type}: {message.text}")
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"{who}: {error}"))


def chip(message, emoji: str):
    return message.locator(f'.reaction[data-emoji="{emoji}"]')


def test_a_reaction_shows_live_on_the_other_page(group: Group, screenshot):
    """Bob reacts from the quick row; Alice sees the chip at once, sees who, adds hers by
    clicking it, and picks another emoji by searching the picker from the keyboard."""
    alice, bob = group.alice.page, group.bob.page
    problems: list[str] = []
    watch_console(alice, "alice", problems)
    watch_console(bob, "bob", problems)
    send(alice, "Who is up for a picnic on Saturday?")
    on_bob = messages(bob).filter(has_text="picnic")
    on_alice = messages(alice).filter(has_text="picnic")
    expect(on_bob).to_have_count(1, timeout=LIVE)

    on_bob.hover()
    on_bob.locator(".react-bar").get_by_role("button", name="React with thumbs up").click()
    expect(chip(on_bob, THUMBS_UP)).to_have_class(re.compile(r"\bis-mine\b"))
    expect(chip(on_bob, THUMBS_UP).locator(".reaction__count")).to_have_text("1")

    on_alice_chip = chip(on_alice, THUMBS_UP)
    expect(on_alice_chip.locator(".reaction__count")).to_have_text("1", timeout=LIVE)
    expect(on_alice_chip).not_to_have_class(re.compile(r"\bis-mine\b"))
    on_alice_chip.hover()
    who = on_alice_chip.locator(".reaction__who")
    expect(who).to_have_text("Bob Builder reacted with thumbs up")
    expect(who).to_have_css("opacity", "1")
    expect(on_alice_chip).to_have_accessible_name("1 Bob Builder reacted with thumbs up")

    on_alice_chip.click()
    expect(on_alice_chip).to_have_class(re.compile(r"\bis-mine\b"))
    expect(on_alice_chip.locator(".reaction__count")).to_have_text("2")
    # The names are separated by the stylesheet (", "), which leaves out the hidden ones.
    expect(on_alice_chip).to_have_accessible_name("2 Bob Builder, You reacted with thumbs up")
    on_bob_chip = chip(on_bob, THUMBS_UP)
    expect(on_bob_chip.locator(".reaction__count")).to_have_text("2", timeout=LIVE)
    expect(on_bob_chip).to_have_accessible_name("2 You, Alice Liddell reacted with thumbs up")

    # The picker, from the keyboard: Tab reaches the quick row, "+" opens it, search, Enter.
    send(alice, "I'll bring lemonade")
    last = messages(alice).filter(has_text="lemonade")
    last.locator(".message__author").focus()
    more = last.locator(".react-bar").get_by_role("button", name="More reactions")
    expect(more).to_be_attached()
    more.focus()
    alice.keyboard.press("Enter")
    picker = alice.locator("#emoji-picker")
    expect(picker).to_be_visible()
    search = picker.get_by_role("searchbox", name="Search emoji")
    expect(search).to_be_focused()
    search.press_sequentially("lemon")
    results = picker.locator(".emoji-picker__grid .emoji-picker__emoji:visible")
    expect(results.first).to_have_text("🍋")
    screenshot(alice, "reactions-picker")
    alice.keyboard.press("Enter")
    expect(picker).to_be_hidden()
    expect(more).to_be_focused()  # back where the picker was opened from
    expect(chip(last, "🍋")).to_have_class(re.compile(r"\bis-mine\b"))
    expect(chip(messages(bob).filter(has_text="lemonade"), "🍋")).to_have_count(1, timeout=LIVE)

    # Arrow keys move through the results; Escape closes without reacting.
    more.click()
    search.press_sequentially("heart")
    search.press("ArrowDown")
    first = results.first
    expect(first).to_be_focused()
    alice.keyboard.press("ArrowRight")
    expect(results.nth(1)).to_be_focused()
    alice.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    expect(last.locator(".reaction[data-emoji]")).to_have_count(1)

    # Bob takes his back: Alice's chip counts one again, hers.
    on_bob_chip.click()
    expect(on_alice_chip.locator(".reaction__count")).to_have_text("1", timeout=LIVE)
    expect(on_alice_chip).to_have_accessible_name("1 You reacted with thumbs up")
    bob.mouse.move(0, 0)
    screenshot(bob, "reactions-chips")
    assert not problems, "\n".join(problems)


def test_on_a_phone_react_and_a_long_press_open_the_picker_as_a_sheet(group: Group, browser, screenshot):
    """At 390 px on a touch screen every message shows React; a long press opens the same
    picker, along the bottom of the screen."""
    send(group.alice.page, "Picnic: Saturday at noon")
    phone = browser.new_context(
        base_url=group.alice.page.url.split("/r/")[0], viewport=PHONE, is_mobile=True, has_touch=True
    )
    try:
        page = phone.new_page()
        problems: list[str] = []
        watch_console(page, "bob on a phone", problems)
        log_in(page, group.bob)
        page.goto(group.url)
        wait_connected(page)
        message = messages(page).filter(has_text="Picnic: Saturday")
        react_button = message.get_by_role("button", name="React", exact=True)
        expect(react_button).to_be_visible()
        react_button.tap()
        picker = page.locator("#emoji-picker")
        expect(picker).to_be_visible()
        box = picker.bounding_box()
        assert box["x"] == 0 and box["width"] == PHONE["width"]
        assert box["y"] + box["height"] == pytest.approx(PHONE["height"], abs=1)
        page.keyboard.press("Escape")  # the search box has the focus
        expect(picker).to_be_hidden()

        body = message.locator(".message__body")
        box = body.bounding_box()
        point = {"pointerType": "touch", "clientX": box["x"] + 10, "clientY": box["y"] + 5, "isPrimary": True}
        body.dispatch_event("pointerdown", point)
        page.wait_for_timeout(700)
        body.dispatch_event("pointerup", point)
        expect(picker).to_be_visible()
        picker.locator(".emoji-picker__quick").get_by_role("button", name="React with red heart").tap()
        expect(chip(message, "\u2764\ufe0f")).to_have_class(re.compile(r"\bis-mine\b"))
        on_alice = messages(group.alice.page).filter(has_text="Picnic: Saturday")
        expect(chip(on_alice, "\u2764\ufe0f")).to_have_count(1, timeout=LIVE)

        react_button.tap()
        expect(picker).to_be_visible()
        screenshot(page, "reactions-phone-picker")
        page.keyboard.press("Escape")
        screenshot(page, "reactions-phone")
        assert not problems, "\n".join(problems)
    finally:
        phone.close()


def test_without_javascript_a_reaction_is_a_form(group: Group, browser):
    """No script: React leads to a picker page whose buttons post; the chip shows after."""
    send(group.alice.page, "Bring a blanket")
    context = browser.new_context(base_url=group.alice.page.url.split("/r/")[0], java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, group.bob)
        page.goto(group.url)
        message = messages(page).filter(has_text="Bring a blanket")
        message.get_by_role("link", name="React").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("React to this message")
        page.get_by_role("searchbox", name="Search emoji").fill("blanket")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("searchbox", name="Search emoji").fill("sun")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("button", name="sun", exact=True).click()
        message = messages(page).filter(has_text="Bring a blanket")
        expect(message.locator(".reaction[data-emoji]")).to_contain_text("☀️")
        on_alice = messages(group.alice.page).filter(has_text="Bring a blanket")
        expect(on_alice.locator(".reaction[data-emoji]")).to_contain_text("1", timeout=LIVE)
    finally:
        context.close()


def log_in(page: Page, person: Person) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", person.username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form[action='/accounts/login/'] button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
