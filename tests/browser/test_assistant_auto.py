"""Automatically, in a real browser: the assistant of a new group stays out of small talk,
cheers good news with a reaction, answers a question put to the group unasked, and anyone
can see why it spoke and quiet it for an hour. And it searches the web when asked."""

import threading

import pytest
from playwright.sync_api import expect

from tests.browser.test_assistant import group_with_assistant, replies, send

pytestmark = pytest.mark.browser

# A decision waits for a pause in the conversation (ASSISTANT_DECIDE_PAUSE_SECONDS, 3 s),
# then for the runner's next look: generous, as on a loaded machine.
DECIDED = 20_000

ANSWER = "The ridge trail closes from **November to March**; the valley loop stays open all winter."
REASON = "A factual question to the group about the trail that I can answer."


def test_an_unprompted_reply_shows_why_it_spoke(assistant_person, fake_openai, screenshot):
    alice, bob, _url = group_with_assistant(assistant_person)
    page, other = alice.page, bob.page
    errors: list[str] = []
    for viewer in (page, other):
        viewer.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        viewer.on("pageerror", lambda error: errors.append(str(error)))

    fake_openai.queue_decision("react", "Good news for the group.", "🎉")
    send(page, "We got the cabin for the weekend!")
    cabin = other.locator("#messages article").filter(has_text="We got the cabin for the weekend!")
    expect(cabin.locator('.reaction[data-emoji="🎉"]')).to_have_count(1, timeout=DECIDED)
    assert len(fake_openai.reply_requests()) == 0  # a reaction, not a reply
    # Why it reacted: in the chip's list of who reacted, on hover.
    chip = cabin.locator('.reaction[data-emoji="🎉"]')
    chip_why = chip.locator(".reaction__why")
    expect(chip_why).to_have_text("Assistant — why: Good news for the group.")
    chip.hover()
    expect(chip.locator(".reaction__who")).to_have_css("opacity", "1")
    other.mouse.move(0, 0)

    fake_openai.queue_decision("respond", REASON)
    fake_openai.queue(text=ANSWER, token_interval=0.02)
    send(other, "does anyone know if the trail is open in winter?")
    for viewer in (page, other):
        expect(replies(viewer)).to_have_count(1, timeout=DECIDED)
        expect(replies(viewer).first.locator(".message__body")).to_contain_text("November to March")
    why = replies(page).first.locator(".message__why")
    expect(why.locator("summary")).to_have_text("Why?", timeout=DECIDED)
    expect(why.get_by_text(REASON)).to_be_hidden()
    why.locator("summary").click()
    expect(why.get_by_text(REASON)).to_be_visible()
    expect(why.get_by_role("button", name="Quiet for an hour")).to_be_visible()
    page.evaluate("document.activeElement.blur()")  # no hover or focus bar in the picture
    screenshot(page, "assistant-why")
    page.set_viewport_size({"width": 390, "height": 844})
    why.scroll_into_view_if_needed()
    screenshot(page, "assistant-why-mobile")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Quiet for an hour, from the reply: the room is told, live.
    why.get_by_role("button", name="Quiet for an hour").click()
    note = "Alice Liddell asked the assistant to stay quiet for an hour; it still answers mentions"
    expect(other.locator("#messages .message--system").filter(has_text=note)).to_have_count(
        1, timeout=DECIDED
    )
    # The room's settings say so, and show what the assistant remembers of the room.
    page.goto(f"{_url}settings/")
    panel = page.locator("#assistant-panel")
    expect(panel.get_by_text("it answers only mentions until then")).to_be_visible()
    expect(panel.get_by_label("Automatically")).to_be_checked()
    expect(panel.get_by_role("heading", name="What the assistant remembers about this room")).to_be_visible()
    expect(panel.get_by_label("The assistant may search the web")).to_be_checked()
    panel.scroll_into_view_if_needed()
    screenshot(page, "assistant-settings-auto")
    page.set_viewport_size({"width": 390, "height": 844})
    panel.scroll_into_view_if_needed()
    screenshot(page, "assistant-settings-auto-mobile")
    assert errors == []


def test_it_searches_the_web_and_links_its_sources(
    assistant_person, fake_openai, fake_searxng_server, screenshot
):
    """Asked about something recent, the assistant searches (the room sees it), then answers
    with numbered links to its sources."""
    alice, bob, _url = group_with_assistant(assistant_person)
    page = alice.page
    fake_searxng_server.results(
        [
            {
                "title": "Ridge trail closed for winter",
                "url": "https://parks.example.org/ridge",
                "content": "Nov-Mar.",
            },
            {
                "title": "Valley loop open all year",
                "url": "https://hikes.example.com/valley",
                "content": "Open.",
            },
        ]
    )
    searching = fake_searxng_server.gate = threading.Event()
    fake_openai.queue_tool_call("web_search", {"query": "ridge trail winter 2026"})
    fake_openai.queue(text="The ridge trail is closed until March [1]; the valley loop stays open [2].")
    send(page, "@assistant is the ridge trail open this winter?")
    reply = replies(bob.page).first
    try:
        expect(reply.locator(".message__body")).to_contain_text(
            "Searching the web for “ridge trail winter 2026”…", timeout=DECIDED
        )
        screenshot(bob.page, "assistant-searching")
    finally:
        searching.set()
        fake_searxng_server.gate = None
    links = replies(page).first.locator(".message__body ol a")
    expect(links).to_have_count(2, timeout=DECIDED)
    expect(links.first).to_have_text("Ridge trail closed for winter")
    expect(links.first).to_have_attribute("href", "https://parks.example.org/ridge")
    page.evaluate("document.activeElement.blur()")
    screenshot(page, "assistant-search")
