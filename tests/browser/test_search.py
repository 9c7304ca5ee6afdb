"""Search and jump to a message in a real browser: the top bar's search, a result opening the
room around the message, live messages on a page showing an older window, and a phone."""

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import VIEWPORT, Person, _live_server, sign_up
from tests.browser.test_console import Console
from tests.browser.test_live import LIVE, create_group, messages, send, seqs, wait_connected

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def busy_app(tmp_path_factory) -> Iterator[str]:
    """A server whose rate limits let a test fill a room with a long history at once."""
    extra = {"RATE_MESSAGES_PER_10_SECONDS": "0", "RATE_MESSAGES_PER_HOUR": "0"}
    with _live_server(tmp_path_factory.mktemp("calpico_search_var"), extra) as url:
        yield url


@pytest.fixture
def people(browser, busy_app) -> Iterator[tuple[Callable[..., Person], Console]]:
    console = Console()
    contexts = []

    def sign_up_person(name: str, display_name: str, viewport=VIEWPORT) -> Person:
        context = browser.new_context(base_url=busy_app, viewport=viewport)
        context.set_default_timeout(10_000)
        contexts.append(context)
        console.watch(context, name)
        page = context.new_page()
        username = f"{name}_{len(contexts)}{id(context) % 10_000}"
        sign_up(page, username, display_name)
        return Person(page, username, display_name)

    yield sign_up_person, console
    for context in contexts:
        context.close()


def post_quickly(page: Page, room_id: int, body: str, reply_to: int | None = None) -> int:
    """Post as the composer does without JavaScript; the message's id, from the redirect."""
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page.locator("body").get_attribute("hx-headers")).group(1)
    form = {"body": body, "csrfmiddlewaretoken": token}
    if reply_to:
        form["reply_to"] = str(reply_to)
    response = page.request.post(f"/r/{room_id}/messages/", form=form, max_redirects=0)
    assert response.status == 302, response.status
    return int(re.search(r"#m-(\d+)$", response.headers["location"]).group(1))


def in_view(page: Page, locator) -> bool:
    box = locator.bounding_box()
    history = page.locator("#history").bounding_box()
    return bool(
        box
        and history
        and box["y"] >= history["y"]
        and box["y"] + box["height"] <= history["y"] + history["height"]
    )


def test_search_finds_a_message_and_opens_the_room_around_it(people, screenshot):
    """Alice searches from the top bar, opens a result deep in the history; Bob's new
    messages wait behind "Jump to latest" until she scrolls down to them."""
    sign_up_person, console = people
    alice = sign_up_person("alice", "Alice Liddell")
    bob = sign_up_person("bob", "Bob Builder")
    carol = sign_up_person("carol", "Carol Phone", viewport=PHONE)
    url, room_id = create_group(alice, "Trip planning", [bob, carol])
    bob.page.goto(url)
    lighthouse = 0
    for n in range(1, 151):
        body = f"Plan item {n}: nothing special"
        if n == 10:
            body = "The <b>lighthouse</b> tour starts at noon, bring a jacket"
        message_id = post_quickly(bob.page, room_id, body)
        if n == 10:
            lighthouse = message_id
    post_quickly(bob.page, room_id, "Still on for the lighthouse?", reply_to=lighthouse)
    alice.page.goto(url)
    wait_connected(alice.page)

    # The top bar's search.
    field = alice.page.get_by_role("searchbox", name="Search messages")
    field.fill("lightho")
    field.press("Enter")
    expect(alice.page).to_have_url(re.compile(r"/search/\?q=lightho$"))
    hits = alice.page.locator(".search-hit")
    expect(hits).to_have_count(2)
    first, second = hits.nth(0), hits.nth(1)
    expect(first).to_contain_text("Still on for the lighthouse?")
    expect(second).to_contain_text("Bob Builder")
    expect(second).to_contain_text("in Trip planning")
    expect(second.locator(".search-hit__snippet")).to_have_text(
        "The <b>lighthouse</b> tour starts at noon, bring a jacket"
    )
    expect(second.locator("mark")).to_have_text("lighthouse")
    screenshot(alice.page, "search-results")

    # A result opens the room around the message, highlighted, with the way back to the end.
    second.click()
    expect(alice.page).to_have_url(re.compile(rf"/r/{room_id}/m/\d+/$"))
    wait_connected(alice.page)
    target = alice.page.locator("#messages > .message.is-target")
    expect(target).to_contain_text("tour starts at noon")
    assert in_view(alice.page, target)
    jump = alice.page.locator("#jump-latest")
    expect(jump).to_be_visible()
    assert max(seqs(alice.page)) < 50  # not the end of the room
    screenshot(alice.page, "search-jump")

    # Live messages do not land after this older window; the button says they came.
    before = seqs(alice.page)
    send(bob.page, "A live one while Alice reads old messages")
    expect(jump.locator(".jump-latest__new")).to_be_visible(timeout=LIVE)
    assert seqs(alice.page) == before
    expect(messages(alice.page).filter(has_text="A live one")).to_have_count(0)

    # Scrolling down loads newer history until the latest; then the page is live again.
    for _ in range(10):
        alice.page.locator("#history").evaluate("pane => pane.scrollTop = pane.scrollHeight")
        if not alice.page.locator("#messages > .load-newer").count():
            break
        alice.page.wait_for_timeout(300)
    expect(alice.page.locator("#messages > .load-newer")).to_have_count(0)
    expect(jump).to_have_count(0)
    expect(messages(alice.page).filter(has_text="A live one")).to_have_count(1, timeout=LIVE)
    send(bob.page, "And one more, live")
    expect(messages(alice.page).filter(has_text="And one more, live")).to_have_count(1, timeout=LIVE)
    all_seqs = seqs(alice.page)
    assert all_seqs == sorted(all_seqs) and len(all_seqs) == len(set(all_seqs))
    assert all_seqs == list(range(all_seqs[0], all_seqs[-1] + 1))  # no gap, nothing twice

    # A reply's quote leads to its original, far up the history (not on the page: the
    # latest messages and the page of older ones it loads at once).
    alice.page.goto(url)
    wait_connected(alice.page)
    # On its quoted name: the message's hover bar (reactions, Reply, Continue in My
    # assistant, …) floats over the right half of a quote at the top of a message.
    alice.page.locator(".message__quote").filter(has_text="tour starts at noon").click(
        position={"x": 30, "y": 8}
    )
    expect(alice.page).to_have_url(re.compile(rf"/r/{room_id}/m/\d+/$"))
    expect(alice.page.locator("#messages > .message.is-target")).to_contain_text("tour starts at noon")

    # Sending from that older window goes to the end of the room, where the message is.
    wait_connected(alice.page)
    textarea = alice.page.locator("#composer textarea")
    textarea.fill("Replying from way back")
    textarea.press("Enter")
    expect(alice.page).to_have_url(re.compile(rf"/r/{room_id}/$"))
    expect(messages(alice.page).filter(has_text="Replying from way back")).to_have_count(1)
    expect(alice.page.locator("#jump-latest")).to_have_count(0)

    # On a phone: the search link, the results, the message.
    page = carol.page
    page.goto("/rooms/")
    page.get_by_role("link", name="Search messages").click()
    expect(page).to_have_url(re.compile(r"/search/$"))
    page.get_by_role("searchbox", name="Search messages").fill('"starts at noon" from:' + bob.username)
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".search-hit")).to_have_count(1)
    screenshot(page, "search-results-mobile")
    page.locator(".search-hit").click()
    target = page.locator("#messages > .message.is-target")
    expect(target).to_contain_text("tour starts at noon")
    assert in_view(page, target)
    expect(page.locator("#jump-latest")).to_be_visible()
    screenshot(page, "search-jump-mobile")
    page.goto("/search/")
    screenshot(page, "search-help-mobile")

    assert not console.problems, "\n".join(console.problems)
