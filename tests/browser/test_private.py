"""Asking the assistant privately, tried as two new people in one room would: Alice catches
up and asks privately while Bob, in his own browser context, sees nothing of it; sharing puts
the answer in the room; the budget meter moves and the cut-off works."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_assistant import REPLY, group_with_assistant, replies
from tests.browser.test_live import LIVE, wait_connected

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("CALPICO_PRIVATE_SHOTS", ""))
CATCH_UP = (
    "- Lisbon is decided for 3 to 10 May [#3]\n- Bob asks you to book the train [#4]\n- Open: where to stay"
)
PRIVATE = "You decided on Lisbon, 3 to 10 May [#3]. Nobody has booked the train yet [#4]."


def shot(page: Page, name: str) -> None:
    """Screenshots for reviewing this screen at 1280 and 390 px (CALPICO_PRIVATE_SHOTS=dir)."""
    if not os.environ.get("CALPICO_PRIVATE_SHOTS"):
        return
    page.mouse.move(0, 0)
    page.screenshot(path=SHOTS / f"private-{name}.png", animations="disabled")


def watch_console(page: Page, problems: list[str]) -> None:
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))


def post_quietly(page: Page, text: str) -> None:
    textarea = page.locator("#composer textarea")
    textarea.fill(text)
    textarea.press("Enter")
    expect(textarea).to_have_value("")


def test_catch_up_and_ask_privately_while_the_other_member_sees_nothing(
    assistant_person, fake_openai, screenshot
):
    alice, bob, url = group_with_assistant(assistant_person)
    problems: list[str] = []
    for person in (alice, bob):
        watch_console(person.page, problems)

    # Alice is away while Bob writes.
    alice.page.goto("/rooms/")
    post_quietly(bob.page, "Where shall we go in May?")
    post_quietly(bob.page, "We decided: Lisbon, 3 to 10 May.")
    post_quietly(bob.page, "Alice, can you book the train?")
    for i in range(14):
        if i == 6:
            # Past RATE_MESSAGES_PER_10_SECONDS (10): Bob's next messages wait for the window.
            bob.page.wait_for_timeout(10_500)
        post_quietly(bob.page, f"Ideas for places to stay, number {i}")
    expect(bob.page.locator("#messages article.is-mine")).to_have_count(17)

    alice.page.goto(url)
    wait_connected(alice.page)
    catch_up = alice.page.locator("#catch-up")
    expect(catch_up).to_contain_text("17 unread messages")
    shot(alice.page, "catch-up-offer")
    alice.page.emulate_media(color_scheme="dark")
    shot(alice.page, "catch-up-offer-dark")
    alice.page.emulate_media(color_scheme="light")
    fake_openai.queue(text=CATCH_UP, token_interval=0.03)
    # Offered on the "New messages" line too, which submits the same form.
    on_the_line = alice.page.locator("#unread-line").get_by_role("button", name="Catch me up")
    expect(on_the_line).to_be_visible()
    on_the_line.scroll_into_view_if_needed()
    shot(alice.page, "catch-up-line")
    on_the_line.click()
    card = alice.page.locator("#private-answers .private-answer").first
    expect(card).to_have_class(re.compile(r"private-answer--done"), timeout=REPLY)
    expect(card).to_contain_text("only you can see this")
    expect(catch_up).to_have_count(0)  # asked once: the offer goes, here and on the line
    expect(on_the_line).to_be_hidden()
    expect(card).to_contain_text("Lisbon is decided")
    # Each point links to its message.
    expect(card.locator("a[href$='/m/3/']")).to_have_count(1)
    asked = fake_openai.chat_requests()[-1]
    assert "Ideas for places to stay, number 13" in str(asked["messages"])

    fake_openai.queue(text=PRIVATE, token_interval=0.03)
    alice.page.get_by_text("Ask the assistant privately").click()
    alice.page.get_by_label("Your private question").fill("What did we decide about dates?")
    alice.page.locator("#private-ask").get_by_role("button", name="Ask").click()
    second = alice.page.locator("#private-answers .private-answer").nth(1)
    expect(second).to_have_class(re.compile(r"private-answer--done"), timeout=REPLY)
    expect(second).to_contain_text("Nobody has booked the train yet")
    expect(alice.page.get_by_label("Your private question")).to_have_value("")
    screenshot(alice.page, "private-answers")
    shot(alice.page, "1280")
    alice.page.set_viewport_size({"width": 390, "height": 844})
    shot(alice.page, "390")
    alice.page.set_viewport_size({"width": 1280, "height": 800})

    # Bob, on the same room the whole time, saw nothing of it; nor does a reload show it.
    for _ in range(2):
        expect(bob.page.locator(".private-answer")).to_have_count(0)
        expect(bob.page.locator("body")).not_to_contain_text("Nobody has booked")
        expect(bob.page.locator("body")).not_to_contain_text("What did we decide about dates?")
        bob.page.reload()
        wait_connected(bob.page)
    shot(bob.page, "other-member")

    # Share to room: the question and the answer, as Alice's message, for both.
    second.get_by_role("button", name="Share to room").click()
    expect(second).to_have_count(1)  # the catch-up stays; the shared one went
    expect(alice.page.locator("#private-answers .private-answer")).to_have_count(1)
    for page in (alice.page, bob.page):
        shared = page.locator("#messages article").filter(has_text="Nobody has booked the train yet")
        expect(shared).to_have_count(1, timeout=LIVE)
        expect(shared).to_contain_text("What did we decide about dates?")
    # Discard: the catch-up goes.
    alice.page.locator("#private-answers .private-answer").get_by_role("button", name="Discard").click()
    expect(alice.page.locator("#private-answers .private-answer")).to_have_count(0)
    assert not problems, problems


def test_the_budget_meter_moves_and_the_cut_off_works(assistant_person, fake_openai):
    alice, bob, url = group_with_assistant(assistant_person)
    page = alice.page
    page.goto(f"{url}settings/")
    budget = page.locator("#ai-budget")
    expect(budget).to_contain_text("no limit")
    budget.get_by_label("Counted in").select_option("runs")
    budget.get_by_label("Monthly budget").fill("2")
    budget.get_by_role("button", name="Save budget").click()
    expect(page.locator(".flash")).to_contain_text("The AI budget is saved.")
    expect(page.locator("#ai-budget")).to_contain_text("0 of 2 runs used")

    page.goto(url)
    wait_connected(page)
    for n in (1, 2):
        fake_openai.queue(text=f"Answer {n}")
        post_quietly(page, f"@assistant question {n}")
        expect(replies(page).filter(has_text=f"Answer {n}")).to_have_count(1, timeout=REPLY)
    used_up = re.compile(r"AI budget for \w+ is used up")
    expect(page.locator("#messages .message--system").filter(has_text=used_up)).to_have_count(1, timeout=LIVE)

    page.goto(f"{url}settings/")
    expect(page.locator("#ai-budget")).to_contain_text("2 of 2 runs used")
    expect(page.locator("#ai-budget")).to_contain_text("replies")
    page.locator("#ai-budget").scroll_into_view_if_needed()
    shot(page, "budget")

    page.goto(url)
    wait_connected(page)
    asked = len(fake_openai.chat_requests())
    post_quietly(page, "@assistant one more?")
    refusal = replies(page).filter(has_text=used_up)
    expect(refusal).to_have_count(1, timeout=REPLY)
    expect(replies(bob.page).filter(has_text=used_up)).to_have_count(1, timeout=LIVE)
    expect(bob.page.locator("#messages .message--system").filter(has_text=used_up)).to_have_count(1)
    assert len(fake_openai.chat_requests()) == asked
    # Retry on the refusal stays refused, saying why; nothing is asked of the model.
    refusal.get_by_role("button", name="Retry").click()
    expect(page.locator("#toasts .toast--error")).to_contain_text("is used up")
    page.wait_for_timeout(500)
    expect(refusal).to_have_count(1)
    assert len(fake_openai.chat_requests()) == asked

    # A bad budget is shown in the form, with what is wrong.
    page.goto(f"{url}settings/")
    page.locator("#ai-budget").get_by_label("Monthly budget").fill("-5")
    page.locator("#ai-budget").get_by_role("button", name="Save budget").click()
    expect(page.locator("#ai-budget .field__error")).to_contain_text("greater than or equal to 1")
    page.locator("#ai-budget").scroll_into_view_if_needed()
    shot(page, "budget-error")
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("#ai-budget").scroll_into_view_if_needed()
    shot(page, "budget-error-390")
