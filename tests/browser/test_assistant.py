"""The assistant in a real browser, against a fake OpenAI API in the test process.

Everyone in the room watches the same reply stream in, stop, fail and retry, live; images
show inline; each person's private assistant keeps what they ask it to remember.
"""

import re
import threading
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person
from tests.browser.test_live import LIVE, create_group, wait_connected

pytestmark = pytest.mark.browser

# How long a whole reply may take to show, from sending the message that asks for it.
REPLY = 10_000

TRIP_REPLY = (
    "I suggest Saturday morning: leave at nine, take the coast road, stop for lunch in the old "
    "harbour town, and arrive at the cabin well before sunset."
)

# Records every state the page shows of each assistant message, to tell afterwards what a
# person saw while it streamed (a streaming reply can end between two of Playwright's polls).
RECORD_ASSISTANT_MESSAGES = """() => {
    window.assistantLog = [];
    const list = document.getElementById("messages");
    const record = () => {
        list.querySelectorAll("article.message--assistant").forEach((article) => {
            const body = article.querySelector(".message__body");
            const entry = {
                id: article.id,
                classes: article.className,
                text: body ? body.textContent.replace(/\\s+/g, " ").trim() : "",
            };
            const last = window.assistantLog.findLast((seen) => seen.id === entry.id);
            if (!last || last.classes !== entry.classes || last.text !== entry.text) {
                window.assistantLog.push(entry);
            }
        });
    };
    new MutationObserver(record).observe(list, {
        childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ["class"],
    });
}"""


def replies(page: Page):
    return page.locator("#messages article.message--assistant")


def seen_states(page: Page, message_id: str) -> list[dict]:
    return [entry for entry in page.evaluate("window.assistantLog") if entry["id"] == message_id]


def send(page: Page, text: str) -> None:
    """Type a whole message (no autocomplete) and press Enter; wait until it is in the history."""
    textarea = page.locator("#composer textarea")
    textarea.fill(text)
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(page.locator("#messages article.is-mine .message__body").filter(has_text=text)).to_have_count(1)


def group_with_assistant(assistant_person) -> tuple[Person, Person, str]:
    """Alice and Bob, each on the page of Alice's group "Trip planning", connected."""
    alice = assistant_person("alice", "Alice Liddell")
    bob = assistant_person("bob", "Bob Builder")
    url, _room_id = create_group(alice, "Trip planning", [bob])
    bob.page.goto(url)
    wait_connected(alice.page)
    wait_connected(bob.page)
    return alice, bob, url


def test_a_renamed_assistant_answers_a_mention_live_for_everyone(assistant_person, fake_openai, screenshot):
    """Alice names the assistant "Planner" and asks it, picking @Planner from the suggestions;
    Alice and Bob both watch the reply stream in without a reload."""
    alice, bob, url = group_with_assistant(assistant_person)
    page, other = alice.page, bob.page

    page.goto(f"{url}settings/")
    panel = page.locator("#assistant-panel")
    expect(panel.get_by_role("heading", name="Assistant", exact=True)).to_be_visible()
    expect(panel.get_by_label("Automatically")).to_be_checked()  # a new group's default
    panel.get_by_label("Name").fill("Planner")
    panel.get_by_label("Personality").fill("A cheerful trip planner who keeps answers short.")
    panel.get_by_role("button", name="Save assistant").click()
    expect(page.locator(".flash")).to_contain_text("The assistant is updated.")
    expect(panel.get_by_label("Name")).to_have_value("Planner")
    panel.scroll_into_view_if_needed()
    screenshot(page, "assistant-settings")
    renamed = "Alice Liddell renamed the assistant to Planner"
    on_bob = other.locator("#messages .message--system").filter(has_text=renamed)
    expect(on_bob).to_have_count(1, timeout=LIVE)

    page.goto(url)
    wait_connected(page)
    other.evaluate(RECORD_ASSISTANT_MESSAGES)
    other.evaluate("window.stillTheSamePage = true")
    fake_openai.queue(text=TRIP_REPLY, token_interval=0.05)

    textarea = page.locator("#composer textarea")
    textarea.press_sequentially("@Pl")
    menu = page.locator("#mention-menu")
    expect(menu.get_by_role("option")).to_have_count(1)
    expect(menu.get_by_role("option")).to_contain_text("@Planner")
    expect(menu.get_by_role("option")).to_contain_text("AI assistant")
    expect(menu.get_by_role("option")).to_have_attribute("aria-selected", "true")
    screenshot(page, "assistant-mention")
    textarea.press("Enter")
    expect(menu).to_have_count(0)
    expect(textarea).to_have_value("@Planner ")
    textarea.press_sequentially("which day should we leave?")
    textarea.press("Enter")
    expect(textarea).to_have_value("")

    for viewer in (page, other):
        expect(replies(viewer)).to_have_count(1, timeout=LIVE)
        reply = replies(viewer).first
        expect(reply.locator(".message__author")).to_have_text("Planner")
        expect(reply.locator(".badge--ai")).to_have_text("AI")
        expect(reply.locator(".message__quote")).to_contain_text("@Planner which day should we leave?")
    reply_id = replies(other).first.get_attribute("id")

    for viewer in (page, other):
        reply = viewer.locator(f"#{reply_id}")
        expect(reply).to_have_class(re.compile(r"\bmessage--done\b"), timeout=REPLY)
        expect(reply.locator(".message__body")).to_have_text(TRIP_REPLY)
        expect(reply.get_by_role("button", name="Stop")).to_have_count(0)
    screenshot(other, "assistant-reply")
    other.emulate_media(color_scheme="dark")
    screenshot(other, "assistant-reply-dark")
    other.emulate_media(color_scheme="light")

    states = seen_states(other, reply_id)
    partial = [
        state
        for state in states
        if "message--streaming" in state["classes"]
        and state["text"]
        and "is thinking" not in state["text"]
        and len(state["text"]) < len(TRIP_REPLY)
    ]
    assert partial, states
    assert all(TRIP_REPLY.startswith(state["text"]) for state in partial), partial
    first_partial = states.index(partial[0])
    done = next(i for i, state in enumerate(states) if "message--done" in state["classes"])
    assert first_partial < done, states
    assert all("message--streaming" in state["classes"] for state in states[:done]), states
    assert other.evaluate("window.stillTheSamePage") is True

    (request,) = fake_openai.chat_requests()
    assert request["stream"] is True
    assert request["messages"][0]["role"] == "system"
    assert "You are Planner" in request["messages"][0]["content"]
    assert "cheerful trip planner" in request["messages"][0]["content"]
    assert request["messages"][-1] == {
        "role": "user",
        "content": "Alice Liddell: @Planner which day should we leave?",
    }


FIRST_PIECE = "Here is a first idea for the route: drive to the lake on Friday evening,"


def test_anyone_in_the_room_can_stop_a_reply(assistant_person, fake_openai, screenshot):
    """The assistant thinks, then streams its first piece; Bob presses Stop; both keep the
    text so far."""
    alice, bob, _url = group_with_assistant(assistant_person)
    page, other = alice.page, bob.page
    gate = threading.Event()
    # Holds the answer back (hang) until release(), then sends the first piece and waits for the gate.
    pieces = [FIRST_PIECE, " then", " on", " to", " the", " mountains."]
    fake_openai.queue(tokens=pieces, hang=True, gate=gate)

    try:
        textarea = page.locator("#composer textarea")
        textarea.press_sequentially("@As")
        page.locator("#mention-menu").get_by_role("option", name=re.compile("@Assistant")).click()
        expect(textarea).to_have_value("@Assistant ")
        textarea.press_sequentially("plan our route please")
        textarea.press("Enter")
        expect(textarea).to_have_value("")

        for viewer in (page, other):
            reply = replies(viewer)
            expect(reply).to_have_count(1, timeout=LIVE)
            expect(reply).to_have_class(re.compile(r"\bmessage--streaming\b"))
            expect(reply.locator(".message__thinking")).to_have_text("Assistant is thinking")
            expect(reply.get_by_role("button", name="Stop")).to_be_visible()
        screenshot(other, "assistant-thinking")
        fake_openai.wait_for_requests(1, path="/v1/chat/completions")
        time.sleep(0.2)  # the request is recorded a moment before it starts hanging
        fake_openai.release()

        for viewer in (page, other):
            reply = replies(viewer)
            expect(reply.locator(".message__body")).to_have_text(FIRST_PIECE, timeout=REPLY)
            expect(reply).to_have_class(re.compile(r"\bmessage--streaming\b"))
            expect(reply.locator(".message__thinking")).to_have_count(0)
            expect(reply.locator(".message__cursor")).to_be_visible()
            expect(reply.get_by_role("button", name="Stop")).to_be_visible()
        screenshot(other, "assistant-streaming")

        replies(other).get_by_role("button", name="Stop").click()
        for viewer in (page, other):
            reply = replies(viewer)
            expect(reply).to_have_class(re.compile(r"\bmessage--stopped\b"), timeout=LIVE)
            expect(reply.locator(".message__body")).to_have_text(FIRST_PIECE)
            expect(reply.locator(".message__note")).to_have_text("Stopped.")
            expect(reply.locator(".message__note--error")).to_have_count(0)
            expect(reply.get_by_role("button", name="Stop")).to_have_count(0)
            expect(reply.get_by_role("button", name="Retry")).to_have_count(0)
            expect(reply.locator(".message__cursor")).to_have_count(0)
        screenshot(other, "assistant-stopped")
        assert len(fake_openai.chat_requests()) == 1
    finally:
        gate.set()


RETRIED_REPLY = "Second time lucky: the museum opens at ten on Sundays, so meet at the entrance."


def test_a_failed_reply_can_be_retried_in_the_same_message(assistant_person, fake_openai, screenshot):
    """The AI service answers 500: both see the error and Retry; Bob retries; it streams in place."""
    alice, bob, _url = group_with_assistant(assistant_person)
    page, other = alice.page, bob.page
    fake_openai.queue(status=500)
    fake_openai.queue(text=RETRIED_REPLY, token_interval=0.05)

    send(page, "@assistant when does the museum open?")
    for viewer in (page, other):
        reply = replies(viewer)
        expect(reply).to_have_count(1, timeout=LIVE)
        expect(reply).to_have_class(re.compile(r"\bmessage--failed\b"), timeout=REPLY)
        expect(reply.locator(".message__note--error")).to_have_text("The AI service had an error (500).")
        expect(reply.get_by_role("button", name="Retry")).to_be_visible()
    reply_id = replies(page).first.get_attribute("id")
    screenshot(other, "assistant-error")

    page.evaluate(RECORD_ASSISTANT_MESSAGES)
    replies(other).get_by_role("button", name="Retry").click()
    for viewer in (page, other):
        reply = viewer.locator(f"#{reply_id}")
        expect(reply).to_have_class(re.compile(r"\bmessage--done\b"), timeout=REPLY)
        expect(reply.locator(".message__body")).to_have_text(RETRIED_REPLY)
        expect(reply.locator(".message__note")).to_have_count(0)
        expect(reply.get_by_role("button", name="Retry")).to_have_count(0)
        expect(replies(viewer)).to_have_count(1)

    states = seen_states(page, reply_id)
    assert any("message--streaming" in state["classes"] for state in states), states
    assert len(fake_openai.chat_requests()) == 2
    assert fake_openai.chat_requests()[1]["messages"][-1]["content"].endswith(
        "@assistant when does the museum open?"
    )


def test_an_image_shows_inline_for_everyone(assistant_person, fake_openai, screenshot):
    """/image a red fox: the picture appears in the room for Alice and Bob alike."""
    alice, bob, _url = group_with_assistant(assistant_person)
    page, other = alice.page, bob.page

    send(page, "/image a red fox")
    for viewer in (page, other):
        reply = replies(viewer)
        expect(reply).to_have_count(1, timeout=LIVE)
        image = reply.locator(".message__image img")
        expect(image).to_be_visible(timeout=REPLY)
        expect(image).to_have_attribute("alt", "Image made by Assistant")
        expect(reply).to_have_class(re.compile(r"\bmessage--done\b"))
        image.scroll_into_view_if_needed()
        assert image.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    screenshot(other, "assistant-image")

    (request,) = fake_openai.image_requests()
    assert request["prompt"] == "a red fox"
    assert fake_openai.chat_requests() == []


def test_my_assistant_remembers_what_i_ask_it_to(assistant_person, fake_openai, screenshot):
    """Alice opens her private assistant from the sidebar and asks it to remember something."""
    alice = assistant_person("alice", "Alice Liddell")
    page = alice.page
    answer = "Noted: I will suggest vegetarian dishes from now on."
    fake_openai.queue(text=answer, token_interval=0.02)

    page.goto("/")
    page.locator("#pinned-rooms").get_by_role("link", name=re.compile("My assistant")).click()
    expect(page).to_have_url(re.compile(r"/r/\d+/$"))
    room_id = int(re.search(r"/r/(\d+)/$", page.url).group(1))
    expect(page.get_by_role("heading", level=1)).to_have_text("My assistant")
    expect(page.locator(".room-header__sub")).to_contain_text("Only you can see this conversation.")
    wait_connected(page)
    page.goto("/assistant/")
    expect(page).to_have_url(re.compile(rf"/r/{room_id}/$"))
    wait_connected(page)
    pinned = page.locator("#pinned-rooms > li")
    expect(pinned).to_have_count(1)
    expect(pinned.first).to_have_id(f"sidebar-entry-{room_id}")
    expect(page.locator(f"#sidebar-room-{room_id}")).to_have_attribute("aria-current", "page")

    send(page, "remember that I am vegetarian")
    saved = page.locator("#messages .message--system").filter(has_text="Memory saved: I am vegetarian")
    expect(saved).to_have_count(1, timeout=LIVE)
    reply = replies(page)
    expect(reply).to_have_count(1, timeout=LIVE)
    expect(reply).to_have_class(re.compile(r"\bmessage--done\b"), timeout=REPLY)
    expect(reply.locator(".message__body")).to_have_text(answer)
    expect(reply.locator(".message__quote")).to_have_count(0)
    screenshot(page, "my-assistant")
    page.reload()
    expect(page.locator(f"#sidebar-preview-{room_id}")).to_have_text(answer)

    (request,) = fake_openai.chat_requests()
    assert "- I am vegetarian" in request["messages"][0]["content"]

    page.locator(".room-header__sub").get_by_role("link", name="Memories").click()
    expect(page).to_have_url(re.compile(r"/assistant/memories/$"))
    expect(page.locator(".memory__text")).to_have_text(["I am vegetarian"])
    screenshot(page, "assistant-memories")
