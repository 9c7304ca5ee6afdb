"""Live rooms in a real browser: what one person does shows on the other's page, without a
reload, exactly once, and a page that lost its connection catches up with nothing missing."""

import re
import time
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import VIEWPORT, Person, RestartableApp, sign_up

pytestmark = pytest.mark.browser

# How long a live update may take to show on another person's page.
LIVE = 2_000

# The page's socket wrapper, kept by the htmx ws extension in #live's internal data.
SOCKET_WRAPPER = "htmx.find('#live')['htmx-internal-data'].webSocket"

# Holds the page's next connections back until `window.wsBlocked` is false: while blocked each
# new socket is closed before it opens, which fails it (1006) as a network that is down
# would. The content security policy allows no other address to dial instead. Attempts come
# every 200 ms instead of after the extension's growing random delay, so the page is back
# right after the test unblocks it.
BLOCK_RECONNECTS = """() => {
    const create = htmx.createWebSocket;
    window.wsBlocked = true;
    htmx.createWebSocket = (url) => {
        const socket = create(url);
        if (window.wsBlocked) socket.close();
        return socket;
    };
    htmx.config.wsReconnectDelay = () => 200;
}"""


def messages(page: Page):
    return page.locator("#messages article.message")


def seqs(page: Page) -> list[int]:
    return [
        int(seq)
        for seq in page.locator("#messages > [data-seq]").evaluate_all(
            "items => items.map((item) => item.dataset.seq)"
        )
    ]


def wait_connected(page: Page) -> None:
    """Until the page's socket is open (live.js marks #live on the first open)."""
    expect(page.locator("#live")).to_have_attribute("data-connected", "yes")
    expect(page.locator("#connection-banner")).to_be_hidden()


def send(page: Page, text: str) -> None:
    """Type a message and press Enter; wait until the composer is empty again."""
    textarea = page.locator("#composer textarea")
    textarea.fill(text)
    textarea.press("Enter")
    expect(textarea).to_have_value("")
    expect(messages(page).filter(has_text=text)).to_have_count(1)


@dataclass
class Group:
    alice: Person
    bob: Person
    url: str
    id: int


def create_group(owner: Person, title: str, members: list[Person]) -> tuple[str, int]:
    page = owner.page
    page.goto("/rooms/new/")
    page.fill("input[name=title]", title)
    page.fill("input[name=members]", " ".join(m.username for m in members))
    page.get_by_role("button", name="Create group").click()
    expect(page).to_have_url(re.compile(r"/r/\d+/$"))
    return page.url, int(re.search(r"/r/(\d+)/$", page.url).group(1))


@pytest.fixture
def group(person) -> Group:
    """Alice and Bob, each on the page of Alice's group "Trip planning", connected."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    url, room_id = create_group(alice, "Trip planning", [bob])
    bob.page.goto(url)
    wait_connected(alice.page)
    wait_connected(bob.page)
    return Group(alice, bob, url, room_id)


def test_messages_edits_deletes_and_renames_show_live(group):
    """Bob's message, edit and delete and Alice's rename reach the other page without a reload."""
    alice, bob = group.alice.page, group.bob.page
    alice.evaluate("window.stillTheSamePage = true")

    send(bob, "Shall we take the 9:40 train?")
    on_alice = messages(alice).filter(has_text="Shall we take the 9:40 train?")
    expect(on_alice).to_have_count(1, timeout=LIVE)
    expect(on_alice).to_contain_text("Bob Builder")
    expect(on_alice).not_to_have_class(re.compile(r"\bis-mine\b"))
    # The push carries the sidebar preview too: once it shows, Bob's page has had both the
    # post response and the push, and must still show the message once.
    expect(bob.locator(f"#sidebar-preview-{group.id}")).to_have_text("You: Shall we take the 9:40 train?")
    on_bob = messages(bob).filter(has_text="Shall we take the 9:40 train?")
    expect(on_bob).to_have_count(1)
    message_id = on_bob.get_attribute("id")

    on_bob.hover()
    on_bob.get_by_role("link", name="Edit").click()
    bob.locator(f"#{message_id} textarea").fill("Shall we take the 8:15 train?")
    bob.locator(f"#{message_id}").get_by_role("button", name="Save").click()
    expect(bob.locator(f"#{message_id} .message__body")).to_have_text("Shall we take the 8:15 train?")
    edited = alice.locator(f"#{message_id}")
    expect(edited.locator(".message__body")).to_have_text("Shall we take the 8:15 train?", timeout=LIVE)
    expect(edited.locator(".message__edited")).to_have_text("edited")

    bob.once("dialog", lambda dialog: dialog.accept())
    on_bob = bob.locator(f"#{message_id}")
    on_bob.hover()
    on_bob.get_by_role("button", name="Delete").click()
    expect(on_bob.locator(".message__body--deleted")).to_have_text("message deleted")
    expect(edited.locator(".message__body--deleted")).to_have_text("message deleted", timeout=LIVE)
    expect(edited).not_to_contain_text("8:15")

    settings_tab = alice.context.new_page()
    settings_tab.goto(f"{group.url}settings/")
    settings_tab.fill("input[name=title]", "Weekend trip")
    settings_tab.get_by_role("button", name="Rename").click()
    expect(settings_tab.locator(".flash")).to_contain_text("The group is renamed.")
    renamed = "Alice Liddell renamed the group to “Weekend trip”"
    expect(alice.locator("#messages .message--system").last).to_contain_text(renamed, timeout=LIVE)
    expect(bob.locator("#messages .message--system").last).to_contain_text(renamed, timeout=LIVE)
    expect(bob.locator("#room-title")).to_have_text("Weekend trip")
    expect(bob.locator(f"#sidebar-title-{group.id}")).to_have_text("Weekend trip")
    expect(bob).to_have_title(re.compile(r"Weekend trip · Calpico$"))

    assert seqs(alice) == seqs(bob)
    assert alice.evaluate("window.stillTheSamePage") is True


def test_typing_shows_on_the_other_page_and_fades(group):
    """While Bob types (without sending), Alice reads "Bob Builder is typing…" for about 5 s."""
    alice, bob = group.alice.page, group.bob.page
    alice.evaluate(
        """() => {
            window.typingLog = [];
            const line = document.getElementById("typing");
            new MutationObserver(() => window.typingLog.push([performance.now(), line.textContent]))
                .observe(line, { childList: true, characterData: true, subtree: true });
        }"""
    )
    bob.locator("#composer textarea").press_sequentially("Let me check the timetable")

    expect(alice.locator("#typing")).to_have_text("Bob Builder is typing…", timeout=LIVE)
    expect(bob.locator("#typing")).to_have_text("")
    expect(alice.locator("#typing")).to_have_text("", timeout=8_000)
    log = alice.evaluate("window.typingLog")
    shown = next(t for t, text in log if text)
    hidden = next(t for t, text in log if t > shown and not text)
    assert 4_000 <= hidden - shown <= 6_500, log
    expect(bob.locator("#composer textarea")).to_have_value("Let me check the timetable")


def open_direct_room(page: Page, other: Person) -> None:
    page.goto("/messages/new/")
    page.get_by_role("searchbox", name="Search people").press_sequentially(other.username)
    page.locator("#people-results .person").get_by_role("button", name="Message").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(other.name)


def test_the_sidebar_counts_and_raises_rooms_with_new_messages(group, screenshot):
    """Alice reads her chat with Bob while he posts in the group: badge, toast, title."""
    alice, bob = group.alice.page, group.bob.page
    open_direct_room(alice, group.bob)
    send(alice, "Did you see the group?")
    wait_connected(alice)
    bob_direct = bob.context.new_page()
    bob_direct.goto(alice.url)
    wait_connected(bob_direct)
    send(bob_direct, "Not yet, looking now")
    expect(messages(alice).filter(has_text="Not yet, looking now")).to_have_count(1, timeout=LIVE)
    room_list = alice.locator("#room-list > li")
    expect(room_list.first).not_to_have_id(f"sidebar-entry-{group.id}")
    entry = alice.locator(f"#sidebar-room-{group.id}")
    badge = alice.locator(f"#sidebar-badge-{group.id}")
    expect(badge).to_be_hidden()
    title = alice.title()
    alice.evaluate("window.stillTheSamePage = true")

    send(bob, "Who brings the sandwiches?")
    expect(badge).to_have_text("1", timeout=LIVE)
    expect(badge).to_be_visible()
    expect(entry).to_have_class(re.compile(r"\bhas-unread\b"))
    expect(alice.locator(f"#sidebar-preview-{group.id}")).to_have_text(
        "Bob Builder: Who brings the sandwiches?"
    )
    expect(alice).to_have_title(f"(1) {title}")
    toast = alice.locator("#toasts .toast")
    expect(toast).to_have_count(1)
    expect(toast).to_contain_text("Bob Builder in Trip planning")
    expect(toast).to_contain_text("Who brings the sandwiches?")
    expect(toast).to_have_attribute("href", re.compile(rf"^/r/{group.id}/m/\d+/$"))
    bob_direct.locator("#composer textarea").press_sequentially("Sandwiches it is")
    expect(alice.locator("#typing")).to_have_text("Bob Builder is typing…", timeout=LIVE)
    screenshot(alice, "live-room")

    send(bob, "I can bring the fruit.")
    expect(badge).to_have_text("2", timeout=LIVE)
    expect(alice).to_have_title(f"(2) {title}")
    expect(toast).to_have_count(2)
    assert alice.evaluate("window.stillTheSamePage") is True


def test_a_dropped_connection_catches_up_in_order(group):
    """Alice's socket drops; Bob sends three messages; once back, Alice has all three, once."""
    alice, bob = group.alice.page, group.bob.page
    send(bob, "Before the drop")
    expect(messages(alice).filter(has_text="Before the drop")).to_have_count(1, timeout=LIVE)
    before = seqs(alice)
    alice.evaluate("window.stillTheSamePage = true")

    alice.evaluate(BLOCK_RECONNECTS)
    alice.evaluate(f"{SOCKET_WRAPPER}.socket.close()")
    banner = alice.locator("#connection-banner")
    expect(banner).to_be_visible()
    expect(banner).to_have_text("Reconnecting…")

    sent = ["First while away", "Second while away", "Third while away"]
    for text in sent:
        send(bob, text)
    time.sleep(0.5)  # long enough for a push to arrive, were the page still connected
    assert seqs(alice) == before
    expect(banner).to_be_visible()

    alice.evaluate("window.wsBlocked = false")
    expect(banner).to_be_hidden(timeout=5_000)
    for text in sent:
        expect(messages(alice).filter(has_text=text)).to_have_count(1, timeout=LIVE)
    expect(messages(alice).last).to_contain_text("Third while away")
    after = seqs(alice)
    assert after == list(range(after[0], after[-1] + 1)), after
    assert after == seqs(bob)
    assert messages(alice).locator(".message__body").all_inner_texts()[-3:] == sent
    assert alice.evaluate("window.stillTheSamePage") is True


def test_a_room_with_a_new_message_moves_to_the_top_of_the_sidebar(group):
    """Alice is in her chat with Bob; Bob posts in the group: the group goes to the top."""
    alice, bob = group.alice.page, group.bob.page
    open_direct_room(alice, group.bob)
    send(alice, "Did you see the group?")
    wait_connected(alice)
    room_list = alice.locator("#room-list > li")
    expect(room_list.first).not_to_have_id(f"sidebar-entry-{group.id}")

    send(bob, "Who brings the sandwiches?")
    expect(alice.locator(f"#sidebar-badge-{group.id}")).to_have_text("1", timeout=LIVE)
    expect(room_list.first).to_have_id(f"sidebar-entry-{group.id}", timeout=LIVE)


def test_my_message_pushed_to_my_other_tab_is_mine(group):
    """Bob sends from one tab; his other tab shows it as his, with Edit and Delete."""
    bob = group.bob.page
    other_tab = bob.context.new_page()
    other_tab.goto(group.url)
    wait_connected(other_tab)

    send(bob, "Sent from my first tab")
    pushed = messages(other_tab).filter(has_text="Sent from my first tab")
    expect(pushed).to_have_count(1, timeout=LIVE)
    pushed.hover()
    expect(pushed.get_by_role("link", name="Edit")).to_be_visible()
    expect(pushed).to_have_class(re.compile(r"\bis-mine\b"))


# The extension retries a lost connection after a random delay that doubles each attempt,
# up to a minute; the restart test waits for reconnections, not for that lottery.
FAST_RECONNECTS = "() => { htmx.config.wsReconnectDelay = () => 200; }"


@pytest.fixture
def group_on_restartable_app(browser, restartable_app: RestartableApp):
    """Alice and Bob in a group on a server of this test's own, both on the room page."""
    contexts = []

    def sign_up_person(first_name: str, display_name: str) -> Person:
        context = browser.new_context(base_url=restartable_app.url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        sign_up(page, first_name, display_name)
        return Person(page, first_name, display_name)

    alice = sign_up_person("alice", "Alice Liddell")
    bob = sign_up_person("bob", "Bob Builder")
    url, room_id = create_group(alice, "Trip planning", [bob])
    bob.page.goto(url)
    wait_connected(alice.page)
    wait_connected(bob.page)
    yield Group(alice, bob, url, room_id)
    for context in contexts:
        context.close()


def test_a_server_restart_loses_nothing(group_on_restartable_app, restartable_app):
    """The server restarts; Bob posts before Alice's page is back; it catches up by itself."""
    group = group_on_restartable_app
    alice, bob = group.alice.page, group.bob.page
    send(bob, "Before the restart")
    expect(messages(alice).filter(has_text="Before the restart")).to_have_count(1, timeout=LIVE)
    alice.evaluate("window.stillTheSamePage = true")
    bob.evaluate(FAST_RECONNECTS)
    alice.evaluate(BLOCK_RECONNECTS)

    restartable_app.stop()
    expect(alice.locator("#connection-banner")).to_have_text("Reconnecting…")
    expect(bob.locator("#connection-banner")).to_have_text("Reconnecting…")
    restartable_app.start()

    sent = ["Right after the restart", "And one more"]
    for text in sent:
        send(bob, text)
    expect(bob.locator("#connection-banner")).to_be_hidden(timeout=5_000)
    assert messages(alice).filter(has_text="Right after the restart").count() == 0

    alice.evaluate("window.wsBlocked = false")
    expect(alice.locator("#connection-banner")).to_be_hidden(timeout=5_000)
    for text in sent:
        expect(messages(alice).filter(has_text=text)).to_have_count(1, timeout=LIVE)
        expect(messages(bob).filter(has_text=text)).to_have_count(1)
    after = seqs(alice)
    assert after == list(range(after[0], after[-1] + 1)), after
    assert after == seqs(bob)
    assert messages(alice).locator(".message__body").all_inner_texts()[-2:] == sent
    assert alice.evaluate("window.stillTheSamePage") is True

    send(bob, "Live again")
    expect(messages(alice).filter(has_text="Live again")).to_have_count(1, timeout=LIVE)
