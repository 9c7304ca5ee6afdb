"""Safety in a real browser: invite links, blocking, message requests and reports.

Each test is what people do through the pages, on the one live server of the session;
what should reach another person's open page is checked there without a reload.
"""

import re
import time

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import PASSWORD
from tests.browser.test_live import LIVE, create_group, messages, send, wait_connected

pytestmark = pytest.mark.browser

# A live push that must NOT arrive gets this long to show up anyway before we say it didn't.
QUIET = 0.5

INVITE_PATH = re.compile(r"^/join/[A-Za-z0-9_-]{20,64}/$")


def accept_next_dialog(page: Page) -> None:
    """The next confirm() (data-confirm forms) is answered OK."""
    page.once("dialog", lambda dialog: dialog.accept())


def create_invite(page: Page, room_url: str, *, expires: str, uses: str) -> str:
    """Create an invite link from the group's settings; returns its path (/join/<token>/)."""
    page.goto(f"{room_url}settings/")
    section = page.locator("#invites")
    before = section.locator(".invite__url").evaluate_all("inputs => inputs.map((input) => input.value)")
    section.get_by_label("Expires after").select_option(label=expires)
    section.get_by_label("Can be used").select_option(label=uses)
    section.get_by_role("button", name="Create link", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("Invite link created: copy it from the list below.")
    expect(page).to_have_url(re.compile(r"/settings/#invites$"))
    links = section.locator(".invite__url")
    expect(links).to_have_count(len(before) + 1)
    (url,) = set(links.evaluate_all("inputs => inputs.map((input) => input.value)")) - set(before)
    path = re.sub(r"^https?://[^/]+", "", url)
    assert INVITE_PATH.match(path), url
    return path


def fill_sign_up_form(page: Page, username: str) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign up").click()


def system_messages(page: Page):
    return page.locator("#messages .message--system")


def test_a_visitor_signs_up_from_an_invite_link_and_joins_live(person, new_page, live_app, screenshot):
    """Alice creates a link; a visitor opens it logged out, signs up, comes back to the preview
    and joins; Alice, with the room open, sees it happen without a reload."""
    alice = person("alice", "Alice Liddell")
    room_url, room_id = create_group(alice, "Book club", [])
    wait_connected(alice.page)
    alice.page.evaluate("window.stillTheSamePage = true")

    settings = alice.page.context.new_page()
    settings.goto(f"{room_url}settings/")
    expect(settings.locator("#invites .invite")).to_have_count(0)
    expect(settings.locator("#invites")).to_contain_text("No active links.")
    path = create_invite(settings, room_url, expires="1 day", uses="5 uses")
    invite = settings.locator("#invites .invite")
    expect(invite).to_have_count(1)
    expect(invite.locator(".invite__url")).to_have_value(f"{live_app}{path}")
    expect(invite.locator(".invite__url")).to_have_attribute("readonly", "")
    expect(invite.locator(".invite__meta")).to_contain_text("0 uses of 5 · expires")
    expect(invite.locator(".invite__meta")).to_contain_text("by Alice Liddell")
    expect(invite.get_by_role("button", name="Revoke")).to_be_visible()
    settings.locator(".flash__item").click()  # read; it would cover the section in the picture
    expect(settings.locator(".flash__item")).to_have_count(0)
    settings.locator("#invites").scroll_into_view_if_needed()
    screenshot(settings, "invite-links")

    visitor = new_page()
    visitor.goto(path)
    card = visitor.locator(".join")
    expect(card.locator(".join__kicker")).to_have_text("You're invited to join")
    expect(card.get_by_role("heading", level=1)).to_have_text("Book club")
    expect(card.locator(".join__count")).to_have_text("1 member")
    expect(card.locator(".facepile li")).to_have_count(1)
    expect(card.locator(".facepile li").first).to_have_attribute("title", "Alice Liddell")
    expect(card.locator(".join__assistant")).to_contain_text("The assistant here is Assistant")
    expect(card.locator(".join__assistant")).to_contain_text("replies when mentioned")
    expect(card.get_by_role("link", name="I have an account")).to_have_attribute(
        "href", re.compile(r"^/accounts/login/\?next=" + re.escape(path) + "$")
    )
    screenshot(visitor, "join-preview")

    card.get_by_role("link", name="Sign up to join").click()
    expect(visitor).to_have_url(re.compile(r"/accounts/signup/\?next="))
    username = f"dora_{alice.username.split('_')[1]}"
    fill_sign_up_form(visitor, username)
    expect(visitor).to_have_url(f"{live_app}{path}")
    expect(visitor.locator(".join__count")).to_have_text("1 member")
    expect(visitor.locator(".join")).to_contain_text(f"You'll join as {username} (@{username})")
    visitor.get_by_role("button", name="Join Book club").click()

    expect(visitor).to_have_url(re.compile(rf"/r/{room_id}/$"))
    expect(visitor.locator(".flash")).to_contain_text("You joined Book club.")
    expect(visitor.locator("#room-title")).to_have_text("Book club")
    expect(visitor.locator(".room-header__sub")).to_have_text("2 members")
    expect(visitor.locator(f"#sidebar-room-{room_id}")).to_be_visible()
    joined = f"{username} joined with an invite link"
    expect(system_messages(visitor).last).to_contain_text(joined)

    # Alice's open page: the news arrives live, in the history and the sidebar preview.
    on_alice = system_messages(alice.page).filter(has_text=joined)
    expect(on_alice).to_have_count(1, timeout=LIVE)
    expect(alice.page.locator(f"#sidebar-preview-{room_id}")).to_have_text(joined)
    wait_connected(visitor)
    send(visitor, "Hello everyone, thanks for the link!")
    expect(messages(alice.page).filter(has_text="thanks for the link")).to_have_count(1, timeout=LIVE)
    assert alice.page.evaluate("window.stillTheSamePage") is True

    # A reload shows the new member everywhere, and the link counts its use.
    alice.page.reload()
    expect(alice.page.locator(".room-header__sub")).to_have_text("2 members")
    expect(alice.page.locator(".room-header .facepile li")).to_have_count(2)
    settings.reload()
    expect(settings.locator("#invites .invite__meta")).to_contain_text("1 use of 5")

    # Opening the link again as a member offers the room, not a second join.
    visitor.goto(path)
    expect(visitor.locator(".join")).to_contain_text("You're already a member.")
    expect(visitor.get_by_role("link", name="Open Book club")).to_have_attribute("href", f"/r/{room_id}/")


def test_revoked_and_used_up_links_say_they_do_not_work(person, new_page, live_app, screenshot):
    """A revoked link reads "doesn't work"; a one-use link, once used, reads "used up"."""
    alice = person("alice", "Alice Liddell")
    room_url, room_id = create_group(alice, "Garden club", [])
    page = alice.page
    once = create_invite(page, room_url, expires="1 hour", uses="1 use")
    revoked = create_invite(page, room_url, expires="Never", uses="Unlimited")
    links = page.locator("#invites .invite")
    expect(links.first.locator(".invite__meta")).to_contain_text("0 uses · never expires")
    expect(links.last.locator(".invite__meta")).to_contain_text("0 uses of 1 · expires")

    accept_next_dialog(page)
    links.first.get_by_role("button", name="Revoke").click()
    expect(page.locator(".flash")).to_contain_text("The invite link no longer works.")
    expect(links).to_have_count(1)
    expect(links.locator(".invite__url")).to_have_value(re.compile(re.escape(once) + "$"))

    visitor = new_page()
    response = visitor.goto(revoked)
    assert response.status == 404
    expect(visitor.get_by_role("heading", level=1)).to_have_text("This link doesn't work")
    expect(visitor.locator(".join")).to_contain_text("It may have been revoked; ask for a new one.")
    expect(visitor.get_by_role("button", name=re.compile("Join"))).to_have_count(0)
    expect(visitor.get_by_role("link", name="Sign up to join")).to_have_count(0)

    bob = person("bob", "Bob Builder")
    bob.page.goto(once)
    bob.page.get_by_role("button", name="Join Garden club").click()
    expect(bob.page).to_have_url(re.compile(rf"/r/{room_id}/$"))
    expect(system_messages(bob.page).last).to_contain_text("Bob Builder joined with an invite link")

    response = visitor.goto(once)
    assert response.status == 410
    expect(visitor.get_by_role("heading", level=1)).to_have_text("This link is used up")
    expect(visitor.locator(".join")).to_contain_text(
        "This invite link has been used as many times as it allows. Ask for a new one."
    )
    expect(visitor.get_by_role("button", name=re.compile("Join"))).to_have_count(0)
    expect(visitor.get_by_role("link", name="Sign up to join")).to_have_count(0)
    screenshot(visitor, "join-problem")
    visitor.get_by_role("link", name="Go to Calpico").click()
    expect(visitor).to_have_url(f"{live_app}/")

    page.reload()
    expect(page.locator("#invites .invite")).to_have_count(0)
    expect(page.locator("#invites")).to_contain_text("No active links.")


def test_a_blocked_member_is_collapsed_live_in_a_group(person, screenshot):
    """Carol blocks Bob from his profile while their group is open: his messages fold away
    on her page as they arrive, with nothing in her sidebar or toasts; a click shows one."""
    carol = person("carol", "Carol Danvers")
    bob = person("bob", "Bob Builder")
    room_url, room_id = create_group(carol, "Climbing", [bob])
    bob.page.goto(room_url)
    room, elsewhere = carol.page, carol.page.context.new_page()
    elsewhere.goto("/rooms/")
    for page in (room, elsewhere, bob.page):
        wait_connected(page)
    room.evaluate("window.stillTheSamePage = true")

    send(bob.page, "Anyone up for Saturday?")
    before = messages(room).filter(has_text="Anyone up for Saturday?")
    expect(before).to_have_count(1, timeout=LIVE)
    expect(elsewhere.locator("#toasts .toast")).to_have_count(1, timeout=LIVE)
    elsewhere.locator("#toasts .toast").evaluate("toast => toast.remove()")
    expect(elsewhere.locator(f"#sidebar-badge-{room_id}")).to_have_text("1")

    profile = carol.page.context.new_page()
    profile.goto(f"/u/{bob.username}/")
    accept_next_dialog(profile)
    profile.get_by_role("button", name="Block").click()
    expect(profile.locator(".flash")).to_contain_text("You blocked Bob Builder. They won't be told.")
    expect(profile.locator(".profile")).to_contain_text("You blocked Bob Builder.")
    expect(profile.get_by_role("button", name="Unblock")).to_be_visible()

    # The message already on screen folds away too.
    notice = before.locator(".blocked-notice")
    expect(notice).to_be_visible(timeout=LIVE)
    expect(before.locator(".message__body")).to_be_hidden()

    send(bob.page, "I can bring the ropes.")
    after = messages(room).filter(has_text="I can bring the ropes.")
    expect(after).to_have_count(1, timeout=LIVE)
    expect(after).to_have_class(re.compile(r"\bis-blocked\b"))
    expect(after.locator(".blocked-notice")).to_have_text("Message from a blocked account · show")
    expect(after.locator(".message__body")).to_be_hidden()
    expect(after.locator(".message__author")).to_be_hidden()
    room.locator("#composer textarea").focus()
    screenshot(room, "blocked-collapsed")

    time.sleep(QUIET)  # the same push would have brought a toast, a preview and a count
    expect(room.locator("#toasts .toast")).to_have_count(0)
    expect(elsewhere.locator("#toasts .toast")).to_have_count(0)
    expect(elsewhere.locator(f"#sidebar-badge-{room_id}")).to_have_text("1")
    expect(elsewhere.locator(f"#sidebar-preview-{room_id}")).to_have_text(
        "Bob Builder: Anyone up for Saturday?"
    )

    after.locator(".blocked-notice").click()
    expect(after.locator(".message__body")).to_have_text("I can bring the ropes.")
    expect(after.locator(".message__author")).to_have_text("Bob Builder")
    expect(after.locator(".blocked-notice")).to_be_hidden()
    expect(before.locator(".message__body")).to_be_hidden()
    assert room.evaluate("window.stillTheSamePage") is True

    # Bob's page shows nothing of it.
    expect(bob.page.locator(".blocked-notice")).to_have_count(0)
    expect(messages(bob.page).filter(has_text="I can bring the ropes.")).not_to_have_class(
        re.compile(r"\bis-blocked\b")
    )

    room.reload()
    expect(messages(room).locator(".blocked-notice")).to_have_count(2)
    for text in ("Anyone up for Saturday?", "I can bring the ropes."):
        expect(messages(room).filter(has_text=text).locator(".message__body")).to_be_hidden()


def test_a_stranger_s_message_waits_as_a_request_until_accepted(person, screenshot):
    """Sam, who shares no group with Alice, messages her from her profile; Alice finds the
    request, reads it without a composer, accepts it and replies."""
    alice = person("alice", "Alice Liddell")
    sam = person("sam", "Sam Stranger")
    page = alice.page
    page.goto("/rooms/")
    wait_connected(page)
    expect(page.locator(".requests-link")).to_have_count(0)

    sam.page.goto(f"/u/{alice.username}/")
    sam.page.get_by_role("button", name="Message").click()
    expect(sam.page).to_have_url(re.compile(r"/r/\d+/$"))
    room_id = int(re.search(r"/r/(\d+)/$", sam.page.url).group(1))
    expect(sam.page.get_by_role("heading", level=1)).to_have_text("Alice Liddell")
    send(sam.page, "Hi Alice, we met at the conference last week.")
    wait_connected(sam.page)

    # A request notifies nothing: no toast, no entry in Alice's list.
    time.sleep(QUIET)
    expect(page.locator("#toasts .toast")).to_have_count(0)
    expect(page.locator(f"#sidebar-entry-{room_id}")).to_have_count(0)

    page.reload()
    requests_link = page.locator(".requests-link")
    expect(requests_link).to_have_text(re.compile(r"^Message requests\s+1$"))
    expect(page.locator(f"#sidebar-entry-{room_id}")).to_have_count(0)
    requests_link.click()
    expect(page).to_have_url(re.compile(r"/requests/$"))
    request = page.locator(".people .person")
    expect(request).to_have_count(1)
    expect(request.locator(".person__name")).to_have_text("Sam Stranger")
    expect(request).to_contain_text("Hi Alice, we met at the conference last week.")
    for name in ("Accept", "Delete", "Block"):
        expect(request.get_by_role("button", name=name)).to_be_visible()

    request.locator(".person__link").click()
    expect(page).to_have_url(re.compile(rf"/r/{room_id}/$"))
    banner = page.get_by_role("region", name="Message request")
    expect(banner).to_contain_text("Message request.")
    expect(banner).to_contain_text("You don't share a group with Sam Stranger.")
    for name in ("Accept", "Delete", "Block"):
        expect(banner.get_by_role("button", name=name)).to_be_visible()
    expect(page.locator("#composer textarea")).to_have_count(0)
    expect(messages(page).filter(has_text="we met at the conference")).to_have_count(1)
    screenshot(page, "message-request")

    banner.get_by_role("button", name="Accept").click()
    expect(page).to_have_url(re.compile(rf"/r/{room_id}/$"))
    expect(page.get_by_role("region", name="Message request")).to_have_count(0)
    expect(page.locator("#composer textarea")).to_be_visible()
    expect(page.locator(".requests-link")).to_have_count(0)
    expect(page.locator(f"#sidebar-room-{room_id}")).to_be_visible()
    wait_connected(page)

    send(page, "Hi Sam! Nice to hear from you.")
    expect(messages(sam.page).filter(has_text="Nice to hear from you.")).to_have_count(1, timeout=LIVE)
    send(sam.page, "Shall we meet for coffee?")
    expect(messages(page).filter(has_text="Shall we meet for coffee?")).to_have_count(1, timeout=LIVE)


def report_link(message: Locator) -> Locator:
    message.hover()
    link = message.get_by_role("link", name="Report")
    expect(link).to_be_visible()
    return link


def test_a_member_reports_a_message_once(person, screenshot):
    """Bob reports Alice's message from its hover actions; a second report of it is refused."""
    alice = person("alice", "Alice Liddell")
    bob = person("bob", "Bob Builder")
    room_url, room_id = create_group(alice, "Neighbours", [bob])
    bob.page.goto(room_url)
    wait_connected(alice.page)
    wait_connected(bob.page)
    spam = "Cheap watches at rolex-deals.example, today only!!!"
    send(alice.page, spam)
    send(bob.page, "Is that really you, Alice?")

    # No Report on one's own messages.
    own = messages(bob.page).filter(has_text="Is that really you")
    own.hover()
    expect(own.get_by_role("link", name="Report")).to_be_hidden()

    on_bob = messages(bob.page).filter(has_text=spam)
    expect(on_bob).to_have_count(1, timeout=LIVE)
    message_id = int(on_bob.get_attribute("id").removeprefix("m-"))
    report_url = f"/r/{room_id}/m/{message_id}/report/"
    link = report_link(on_bob)
    expect(link).to_have_attribute("href", report_url)
    link.click()

    page = bob.page
    expect(page).to_have_url(re.compile(re.escape(report_url) + "$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Report a message")
    expect(page.locator(".share-card")).to_have_text(f"Alice Liddell: {spam}")
    for reason in ("Spam", "Harassment", "Something else"):
        expect(page.get_by_label(reason, exact=True)).not_to_be_checked()
    page.get_by_role("button", name="Send report").click()
    expect(page.locator(".field--invalid")).to_contain_text("This field is required.")

    page.goto(report_url)
    page.get_by_label("Spam", exact=True).check()
    page.get_by_label("Anything the moderators should know (optional)").fill("She never writes like this.")
    screenshot(page, "report-form")
    page.get_by_role("button", name="Send report").click()
    expect(page).to_have_url(re.compile(rf"/r/{room_id}/#m-{message_id}$"))
    expect(page.locator(".flash")).to_contain_text(
        "Thanks: the moderators will look at it. You'll get a notice when they act."
    )
    expect(messages(page).filter(has_text=spam)).to_have_count(1)

    link = report_link(messages(page).filter(has_text=spam))
    link.click()
    page.get_by_label("Harassment", exact=True).check()
    page.get_by_role("button", name="Send report").click()
    expect(page.locator(".form-error")).to_have_text("You already reported this message.")
    expect(page).to_have_url(re.compile(re.escape(report_url) + "$"))
