"""Grouped messages and the "New messages" line: the rule (rooms/grouping.py) and the room
page and older pages drawn with it."""

import datetime as dt
import re

import pytest

from rooms import services
from rooms.grouping import continues, lay_out
from rooms.models import Message
from tests.conftest import HTMX, membership, post
from tests.test_room_page import fill

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def message(seq: int, author=None, *, minutes: float = 0, kind=Message.Kind.TEXT, at=NOON) -> Message:
    """An unsaved message, `minutes` after `at`."""
    return Message(seq=seq, author=author, kind=kind, created_at=at + dt.timedelta(minutes=minutes))


# The rule


def test_messages_from_one_person_within_five_minutes_share_a_header(alice):
    assert continues(message(1, alice), message(2, alice, minutes=4.9))
    assert continues(message(1, alice), message(2, alice, minutes=5))


def test_a_longer_pause_starts_a_new_group(alice):
    assert not continues(message(1, alice), message(2, alice, minutes=5.1))


def test_another_author_starts_a_new_group(alice, bob):
    assert not continues(message(1, alice), message(2, bob, minutes=1))


def test_the_first_message_starts_a_group(alice):
    assert not continues(None, message(1, alice))


@pytest.mark.parametrize("kind", [Message.Kind.SYSTEM, Message.Kind.ASSISTANT])
def test_system_and_assistant_messages_stand_alone(alice, kind):
    """A system message breaks a group; the assistant's messages never group (each keeps its
    name and AI badge), even one after another."""
    assert not continues(message(1, alice), message(2, None, minutes=1, kind=kind))
    assert not continues(message(1, None, kind=kind), message(2, alice, minutes=1))
    assert not continues(message(1, None, kind=kind), message(2, None, minutes=1, kind=kind))


def test_a_new_day_starts_a_new_group(alice, settings):
    settings.TIME_ZONE = "UTC"
    before_midnight = dt.datetime(2026, 11, 22, 23, 58, tzinfo=dt.UTC)
    assert not continues(
        message(1, alice, at=before_midnight), message(2, alice, minutes=3, at=before_midnight)
    )
    assert continues(message(1, alice, at=before_midnight), message(2, alice, minutes=1, at=before_midnight))


def test_a_deleted_account_does_not_group_with_another():
    """Messages whose author is gone have no author to share a header with."""
    assert not continues(message(1, None), message(2, None, minutes=1))


def test_lay_out_marks_groups_and_breaks_them_at_the_new_messages_line(alice, bob):
    messages = [
        message(1, alice),
        message(2, alice, minutes=1),
        message(3, alice, minutes=2),  # the first unread: the line goes above it
        message(4, alice, minutes=3),
        message(5, bob, minutes=3),
    ]
    assert lay_out(messages, unread_after=2) == 3
    assert [m.continues_group for m in messages] == [False, True, False, True, False]


def test_lay_out_without_unread_messages_draws_no_line(alice):
    messages = [message(1, alice), message(2, alice, minutes=1)]
    assert lay_out(messages, unread_after=2) is None
    assert lay_out(messages, unread_after=None) is None
    assert lay_out(messages, unread_after=0) == 1  # everything unread: the line above the first


# The room page


def history(page: str) -> str:
    return page[page.index('id="messages"') :]


def articles(page: str) -> list[str]:
    """The opening tag of each message on the page, in order."""
    return re.findall(r'<article class="[^"]*"[^>]*>', history(page))


def test_the_room_page_groups_consecutive_messages(alice, alice_client, bob, group):
    for body in ["one", "two", "three"]:
        services.do_post_message(membership(group, alice), body)
    services.do_post_message(membership(group, bob), "four")
    services.do_post_message(membership(group, bob), "five")
    page = alice_client.get(group.get_absolute_url()).content.decode()
    continued = ["message--continued" in tag for tag in articles(page)]
    assert continued == [False, True, True, False, True]
    assert f'data-group-seconds="{5 * 60}"' in page


def test_the_new_messages_line_marks_where_i_had_read(alice, alice_client, bob, bob_client, group):
    services.do_post_message(membership(group, alice), "Read already")
    services.do_mark_read(membership(group, bob), group.last_seq + 1)
    post(alice_client, group, "First new one")
    post(alice_client, group, "Second new one")
    page = history(bob_client.get(group.get_absolute_url()).content.decode())
    assert page.count('id="unread-line"') == 1
    line = page.index('id="unread-line"')
    assert page.index("Read already") < line < page.index("First new one") < page.index("Second new one")
    # The line breaks the group: the first new message has its header again.
    after_line = re.search(r'<article class="([^"]*)"', page[line:]).group(1)
    assert "message--continued" not in after_line
    # Opening it read it all: the next visit has no line.
    assert 'id="unread-line"' not in bob_client.get(group.get_absolute_url()).content.decode()


def test_no_line_when_i_have_read_everything_or_wrote_the_last_message(alice_client, group):
    post(alice_client, group, "Mine")
    assert 'id="unread-line"' not in alice_client.get(group.get_absolute_url()).content.decode()


def test_the_line_above_the_first_page_travels_with_older_pages(alice, bob, bob_client, group):
    """Over a page of unread messages: the line is on the older page that holds the first one,
    whose link carries my read position on (with htmx, and without JavaScript)."""
    services.do_mark_read(membership(group, bob), group.last_seq)
    read_up_to = group.last_seq
    fill(group, alice, 120)
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert 'id="unread-line"' not in page
    link = re.search(r'href="([^"]*before=\d+[^"]*)"', history(page)).group(1).replace("&amp;", "&")
    assert f"unread_after={read_up_to}" in link
    second = bob_client.get(link, **HTMX).content.decode()
    assert 'id="unread-line"' not in second and f"unread_after={read_up_to}" in second
    third_link = re.search(r'hx-get="([^"]*)"', second).group(1).replace("&amp;", "&")
    third = bob_client.get(third_link, **HTMX).content.decode()
    assert third.count('id="unread-line"') == 1
    assert third.index('id="unread-line"') < third.index(">message 1<")
    assert "unread_after" not in third  # the line is placed: no link carries it further
    no_js = bob_client.get(link).content.decode()  # the same link, as a whole page
    assert "<html" in no_js and f"unread_after={read_up_to}" in history(no_js)


@pytest.mark.parametrize("value", ["abc", "-1", "99999999999999999999", ""])
def test_a_forged_unread_position_does_not_break_the_page(alice_client, group, value):
    response = alice_client.get(group.get_absolute_url(), {"before": 5, "unread_after": value}, **HTMX)
    assert response.status_code == 200


def test_a_message_alone_is_never_drawn_continued(alice, alice_client, group):
    """A message fetched or pushed on its own (an edit, a post's answer) has its header: the
    page's script groups it where it lands."""
    services.do_post_message(membership(group, alice), "one")
    second = services.do_post_message(membership(group, alice), "two").message
    fragment = alice_client.get(second.get_absolute_url(), **HTMX).content.decode()
    assert "message--continued" not in fragment
    assert '<time datetime="' in fragment  # what the script compares
