"""Two people find Calpico, sign up and have their first conversation in a group."""

import re

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from tests.browser.conftest import sign_up

pytestmark = pytest.mark.browser


def messages(page: Page):
    return page.locator("#messages article.message")


def send(page: Page, text: str) -> None:
    """Type a message the way a person does (Shift+Enter between lines, Enter to send)
    and wait until it is in the history and the composer is empty again."""
    textarea = page.locator("#composer textarea")
    count = messages(page).count()
    for number, line in enumerate(text.split("\n")):
        if number:
            textarea.press("Shift+Enter")
        textarea.press_sequentially(line)
    textarea.press("Enter")
    expect(messages(page)).to_have_count(count + 1)
    expect(textarea).to_have_value("")


def portrait(path) -> None:
    """A small PNG that looks like a profile picture: a head and shoulders on a gradient."""
    size = 256
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        draw.line([(0, y), (size, y)], fill=(40 + y // 4, 120 + y // 5, 200 - y // 6))
    draw.ellipse([78, 40, 178, 140], fill=(244, 200, 160))
    draw.ellipse([38, 150, 218, 330], fill=(236, 96, 72))
    image.save(path, format="PNG")


def test_two_new_people_have_their_first_conversation(new_page, screenshot, tmp_path):
    """Sign up, picture, group, messages both ways: the path every new pair of people takes."""
    alice = new_page()
    alice.goto("/")
    expect(alice.get_by_role("heading", level=1)).to_contain_text("Chat together")
    screenshot(alice, "landing")

    alice.get_by_role("link", name="Create an account").click()
    expect(alice).to_have_url(re.compile(r"/accounts/signup/$"))
    screenshot(alice, "signup")
    sign_up(alice, "alice", "Alice Liddell")

    picture = tmp_path / "alice.png"
    portrait(picture)
    alice.set_input_files("input[name=avatar]", picture)
    alice.get_by_role("button", name="Upload picture").click()
    expect(alice.locator(".flash")).to_contain_text("Your profile picture is updated.")
    new_picture = alice.locator(".avatar-editor img.avatar")
    expect(new_picture).to_have_attribute("src", re.compile(r"\.webp$"))
    assert new_picture.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    expect(alice.locator(".topbar img.avatar")).to_have_attribute("src", re.compile(r"\.webp$"))
    screenshot(alice, "profile-settings")

    bob = new_page()
    sign_up(bob, "bob", "Bob Builder")

    alice.get_by_role("link", name="New group").first.click()
    expect(alice).to_have_url(re.compile(r"/rooms/new/$"))
    alice.fill("input[name=title]", "Trip planning")
    alice.fill("input[name=members]", "bob")
    screenshot(alice, "new-group")
    alice.get_by_role("button", name="Create group").click()
    expect(alice).to_have_url(re.compile(r"/r/\d+/$"))
    room_url = alice.url
    room_id = re.search(r"/r/(\d+)/$", room_url).group(1)
    expect(alice.get_by_role("heading", level=1)).to_have_text("Trip planning")

    # htmx appends the message in place: a reload would lose this marker.
    alice.evaluate("window.stillTheSamePage = true")
    send(alice, "Hi @bob, welcome to **Trip planning**!")
    welcome = messages(alice).last
    expect(welcome).to_contain_text("Hi @bob, welcome to Trip planning!")
    expect(welcome.locator(".message__body strong")).to_have_text("Trip planning")
    expect(welcome.locator(".mention")).to_have_text("@bob")

    textarea = alice.locator("#composer textarea")
    textarea.press_sequentially("Plan for Saturday:")
    textarea.press("Shift+Enter")
    textarea.press_sequentially("- 9:40 train from the central station")
    expect(textarea).to_have_value("Plan for Saturday:\n- 9:40 train from the central station")
    expect(messages(alice)).to_have_count(1)
    textarea.press("Shift+Enter")
    textarea.press_sequentially("- picnic by the lake")
    textarea.press("Enter")
    expect(messages(alice)).to_have_count(2)
    expect(messages(alice).last.locator(".message__body li")).to_have_text(
        ["9:40 train from the central station", "picnic by the lake"]
    )
    assert alice.evaluate("window.stillTheSamePage") is True

    bob.goto("/rooms/")
    sidebar_link = bob.locator(f"#sidebar-room-{room_id}")
    expect(sidebar_link).to_contain_text("Trip planning")
    expect(sidebar_link.locator(".badge")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(sidebar_link.locator(".badge")).to_have_attribute("title", re.compile(r"^[1-9]\d* unread$"))
    sidebar_link.click()
    expect(bob).to_have_url(room_url)
    expect(messages(bob).first).to_contain_text("Hi @bob, welcome to Trip planning!")
    expect(bob.locator(".mention--me")).to_have_text("@bob")
    bob.goto("/rooms/")
    expect(sidebar_link.locator(".badge")).to_be_hidden()
    sidebar_link.click()

    plan = messages(bob).filter(has_text="Plan for Saturday")
    plan.hover()
    plan.get_by_role("link", name="Reply").click()
    expect(bob.locator(".composer__reply")).to_contain_text("Replying to Alice Liddell")
    send(bob, "Count me in. I'll bring the sandwiches.")
    reply = messages(bob).last
    expect(reply.locator(".message__quote")).to_contain_text("Plan for Saturday")
    expect(reply.locator(".message__body")).to_have_text("Count me in. I'll bring the sandwiches.")
    expect(bob.locator(".composer__reply")).to_have_count(0)
    send(bob, "Is `9:40` the earliest one? @alice")
    expect(messages(bob).last.locator("code")).to_have_text("9:40")

    alice.reload()
    expect(messages(alice)).to_have_count(4)
    expect(messages(alice).nth(2)).to_contain_text("Bob Builder")
    expect(messages(alice).nth(2)).to_contain_text("Count me in. I'll bring the sandwiches.")
    expect(messages(alice).last.locator(".mention--me")).to_have_text("@alice")
    send(alice, "Yes, the 8:15 is sold out. See you *at the station*, @bob!")
    expect(messages(alice).last.locator("em")).to_have_text("at the station")

    alice.get_by_role("link", name="New message").first.click()
    expect(alice).to_have_url(re.compile(r"/messages/new/$"))
    alice.get_by_role("searchbox", name="Search people").press_sequentially("bo")
    # Other tests on this server sign up more bobs; this is the one with username "bob".
    found = alice.locator("#people-results .person").filter(
        has=alice.locator(".person__username", has_text=re.compile(r"^@bob$"))
    )
    expect(found).to_have_count(1)
    expect(found).to_contain_text("Bob Builder")
    screenshot(alice, "people")
    found.get_by_role("button", name="Message").click()
    expect(alice.get_by_role("heading", level=1)).to_have_text("Bob Builder")
    send(alice, "Shall I book the tickets for both of us?")

    alice.locator(f"#sidebar-room-{room_id}").click()
    expect(alice).to_have_url(room_url)
    expect(messages(alice)).to_have_count(5)
    screenshot(alice, "room")
