"""What the page looks like when it opens: a room at its newest message, the phone's room list."""

import re

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

AT_BOTTOM = "el => Math.abs(el.scrollHeight - el.clientHeight - el.scrollTop)"


def photo(path, size) -> None:
    """A PNG that looks like a picture: sky over a hill, so a screenshot shows its shape."""
    width, height = size
    image = Image.new("RGB", size, (120, 180, 230))
    ImageDraw.Draw(image).ellipse([-width // 2, height // 2, width * 3 // 2, height * 2], fill=(90, 150, 70))
    image.save(path, format="PNG")


def create_group(page: Page, title: str) -> str:
    page.goto("/rooms/new/")
    page.fill("input[name=title]", title)
    page.get_by_role("button", name="Create group").click()
    expect(page).to_have_url(re.compile(r"/r/\d+/$"))
    return page.url


def post(page: Page, room_url: str, body: str = "", image=None) -> None:
    """Post through the room's form endpoint, as the composer does without JavaScript."""
    token = page.locator("#composer input[name=csrfmiddlewaretoken]").input_value()
    multipart = {"csrfmiddlewaretoken": token, "body": body}
    if image is not None:
        multipart["image"] = {"name": image.name, "mimeType": "image/png", "buffer": image.read_bytes()}
    response = page.request.post(f"{room_url}messages/", multipart=multipart, max_redirects=0)
    assert response.status == 302, response.text()


def test_a_room_ending_in_images_opens_at_its_newest_message(person, tmp_path):
    """Images reserve their space before they load, so the room stays scrolled to the bottom."""
    alice = person("alice", "Alice Liddell")
    room_url = create_group(alice.page, "Holiday photos")
    # Few posts (the server limits them to 10 in 10 seconds), but long enough to scroll.
    for number in range(3):
        post(alice.page, room_url, "\n\n".join(f"Day {number}, note {line}" for line in range(6)))
    for number, size in enumerate([(1200, 900), (600, 1200), (1600, 500)]):
        picture = tmp_path / f"photo{number}.png"
        photo(picture, size)
        post(alice.page, room_url, "" if number else "From the trip", image=picture)

    page = alice.page
    # On a real network the pictures arrive after the page has scrolled to the bottom:
    # hold them until then.
    held, opened = [], []

    def hold(route) -> None:
        if opened:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/m/\d+/image/$"), hold)
    page.goto(room_url, wait_until="domcontentloaded")
    opened.append(True)
    for route in held:
        route.continue_()
    images = page.locator("#messages .message__image img")
    expect(images).to_have_count(3)
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#messages .message__image img'))"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    history = page.locator("#history")
    assert history.evaluate("el => el.scrollHeight > el.clientHeight"), "the room should need scrolling"
    assert history.evaluate(AT_BOTTOM) <= 4
    expect(images.last).to_be_in_viewport()


def test_on_a_phone_the_room_list_fills_the_screen_under_its_actions(person, screenshot):
    """At 390 px the index is the room list from the top bar to the bottom of the screen,
    and "New message" and "New group" stay in the top bar."""
    alice = person("alice", "Alice Liddell")
    page = alice.page
    for title, text in [("Trip planning", "The 9:40 train it is."), ("Book club", "Next up: Middlemarch")]:
        post(page, create_group(page, title), text)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/rooms/")

    sidebar = page.locator("#sidebar")
    expect(sidebar.get_by_role("link", name=re.compile("Book club"))).to_be_visible()
    box = sidebar.bounding_box()
    topbar = page.locator(".topbar").bounding_box()
    assert box["y"] == pytest.approx(topbar["y"] + topbar["height"], abs=1)
    assert box["y"] + box["height"] == pytest.approx(844, abs=1)
    assert box["width"] == pytest.approx(390, abs=1)
    expect(page.get_by_text("Pick a conversation")).to_be_hidden()
    for name in ["New message", "New group"]:
        action = page.locator(".topbar").get_by_role("link", name=name)
        expect(action).to_be_visible()
        expect(action).to_be_in_viewport(ratio=1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "mobile-index")

    page.locator(".topbar").get_by_role("link", name="New group").click()
    expect(page).to_have_url(re.compile(r"/rooms/new/$"))
