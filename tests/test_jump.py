"""A link to one message, /r/<room>/m/<seq>/: the room around it, the way on from there,
who may open it, and what it costs."""

import pytest
from django.contrib.admin.sites import site as admin_site
from django.urls import reverse

from accounts.services import do_block
from rooms import services
from rooms.admin import ReportAdmin
from rooms.models import Membership, Report
from rooms.services import moderation
from tests.conftest import HTMX, make_user, membership
from tests.test_room_page import fill, history

pytestmark = pytest.mark.django_db

# After the group's two system messages, "message N" (from `fill`) has seq N + 2.


def jump(client, room, seq, **extra):
    return client.get(reverse("rooms:message", args=[room.pk, seq]), **extra)


def test_a_link_opens_the_room_around_the_message_highlighted(alice_client, alice, bob, group):
    fill(group, bob, 200)
    response = jump(alice_client, group, 102)
    assert response.status_code == 200
    body = history(response.content.decode())
    assert 'data-target-seq="102"' in body
    # 25 messages on each side of it, oldest first.
    assert "message 75<" in body and "message 125<" in body
    assert "message 74<" not in body and "message 126<" not in body
    assert body.index("message 75<") < body.index("message 100<") < body.index("message 125<")
    # Older and newer history both go on from here, and the latest is a click away.
    assert "Load older messages" in body and "?before=77" in body
    assert "Load newer messages" in body and "?after=127" in body
    assert "data-detached" in body and "Jump to latest" in body


def test_a_link_near_the_end_is_the_ordinary_latest_page(alice_client, alice, bob, group):
    fill(group, bob, 60)
    body = history(jump(alice_client, group, 60).content.decode())
    assert "message 58<" in body and "message 60<" in body
    assert "Load newer messages" not in body and "data-detached" not in body
    assert "Jump to latest" not in body


def test_a_link_near_the_start_shows_the_beginning(alice_client, alice, bob, group):
    fill(group, bob, 60)
    body = history(jump(alice_client, group, 1).content.decode())
    assert "This is the beginning of the conversation." in body
    assert "Load older messages" not in body and "message 24<" in body


def test_newer_messages_load_with_htmx_until_the_latest(alice_client, bob, group):
    fill(group, bob, 120)
    response = alice_client.get(group.get_absolute_url(), {"after": 27}, **HTMX)
    fragment = response.content.decode()
    assert "<html" not in fragment
    assert "message 26<" in fragment and "message 75<" in fragment and "message 76<" not in fragment
    assert "?after=77" in fragment
    last = alice_client.get(group.get_absolute_url(), {"after": 100}, **HTMX).content.decode()
    assert "message 120<" in last and "Load newer messages" not in last


def test_newer_messages_work_without_javascript(alice_client, bob, group):
    fill(group, bob, 120)
    body = history(alice_client.get(group.get_absolute_url(), {"after": 27}).content.decode())
    assert "message 26<" in body and "message 75<" in body and "message 76<" not in body
    assert "Load older messages" in body and "Jump to latest" in body


def test_opening_an_old_message_does_not_mark_the_room_read(bob_client, alice, bob, group):
    fill(group, alice, 100)
    Membership.objects.filter(room=group, user=bob).update(last_read_seq=0)
    jump(bob_client, group, 10)
    assert membership(group, bob).last_read_seq == 0


def test_a_deleted_message_opens_as_deleted(alice_client, alice, bob, group):
    message = services.do_post_message(membership(group, bob), "oops").message
    services.do_delete_message(bob, message)
    body = history(jump(alice_client, group, message.seq).content.decode())
    assert f'data-target-seq="{message.seq}"' in body and "message deleted" in body


def test_a_message_of_someone_i_blocked_opens_collapsed_as_in_the_room(alice_client, alice, bob, group):
    message = services.do_post_message(membership(group, bob), "from bob").message
    do_block(alice, bob)
    body = jump(alice_client, group, message.seq).content.decode()
    assert f'data-blocked="{bob.pk}"' in body and f'data-target-seq="{message.seq}"' in body


def test_with_htmx_it_is_the_message_alone(alice_client, alice, group):
    message = services.do_post_message(membership(group, alice), "just me").message
    fragment = jump(alice_client, group, message.seq, **HTMX).content.decode()
    assert fragment.startswith("<article") or fragment.lstrip().startswith("<article")
    assert f'id="m-{message.pk}"' in fragment


# What cannot be opened


def test_a_seq_past_the_end_is_a_clear_not_found_page(alice_client, alice, group):
    response = jump(alice_client, group, group.last_seq + 1)
    assert response.status_code == 404
    page = response.content.decode()
    assert "Message not found" in page and f'href="/r/{group.pk}/"' in page


@pytest.mark.parametrize("seq", ["0", "-1", "abc", "1e3", "99999999999999999999", "9223372036854775808"])
def test_a_forged_seq_is_not_found_never_an_error(alice_client, group, seq):
    response = alice_client.get(f"/r/{group.pk}/m/{seq}/")
    assert response.status_code == 404


def test_the_largest_seq_is_simply_not_found(alice_client, group):
    assert alice_client.get(f"/r/{group.pk}/m/9223372036854775807/").status_code == 404


def test_nobody_outside_the_room_opens_its_messages(mallory_client, alice, group):
    message = services.do_post_message(membership(group, alice), "members only").message
    response = jump(mallory_client, group, message.seq)
    assert response.status_code == 404
    assert "members only" not in response.content.decode()
    assert "Message not found" not in response.content.decode()  # the room is not theirs to know


def test_a_room_i_left_is_closed_to_its_links(carol_client, alice, carol, group):
    message = services.do_post_message(membership(group, alice), "after carol").message
    services.do_leave_room(membership(group, carol))
    assert jump(carol_client, group, message.seq).status_code == 404


def test_someone_elses_private_assistant_room_is_not_found(alice, bob_client):
    from assistant.private import do_open_private_room

    room = do_open_private_room(alice)
    message = services.do_post_message(membership(room, alice), "diary").message
    assert jump(bob_client, room, message.seq).status_code == 404


# What links here


def test_toasts_and_desktop_notifications_link_to_the_message(events, alice, bob, group):
    with events() as sent:
        message = services.do_post_message(membership(group, bob), "look here").message
    [(_, event)] = sent.of_type("room.message")
    assert f'href="/r/{group.pk}/m/{message.seq}/"' in event["toast_html"]


def test_a_reactions_toast_links_to_the_message(events, alice, bob, direct):
    from rooms.services.reactions import do_toggle_reaction

    message = services.do_post_message(membership(direct, alice), "good news").message
    with events() as sent:
        do_toggle_reaction(membership(direct, bob), message, "👍")
    [(_, event)] = sent.of_type("room.reactions")
    assert f'href="/r/{direct.pk}/m/{message.seq}/"' in event["toast_html"]


def test_the_report_queue_links_to_the_message(alice, bob, group, rf):
    message = services.do_post_message(membership(group, bob), "nasty").message
    report = moderation.do_report_message(alice, membership(group, alice), message, reason="spam", text="")
    admin = ReportAdmin(Report, admin_site)
    assert f'href="/r/{group.pk}/m/{message.seq}/"' in admin.in_context(report)
    assert f'href="/r/{group.pk}/m/{message.seq}/"' in admin.reported_text(report)


# What it costs


def test_the_page_around_a_message_costs_what_the_room_page_costs(
    alice_client, alice, bob, django_assert_max_num_queries
):
    """The room page's queries, with one more for the messages after the linked one; its
    fragments of newer messages cost what older ones do."""
    room = services.do_create_group(alice, "Busy", [bob])
    fill(room, bob, 500)
    for i in range(15):
        services.do_create_group(alice, f"Group {i}", [bob])
        services.do_open_direct_room(alice, make_user(f"friend{i}"))
    # Plus one for the viewer's own private answers in the room (the private panel).
    with django_assert_max_num_queries(11):
        response = jump(alice_client, room, 250)
    assert response.status_code == 200
    with django_assert_max_num_queries(4):
        alice_client.get(room.get_absolute_url(), {"after": 300}, **HTMX)


@pytest.mark.parametrize("after", [3, 50, 9_999_999])
def test_newer_than_the_last_message_is_the_ordinary_latest_page(alice_client, bob, group, after):
    # The group's two system messages, then "message 1" at seq 3.
    fill(group, bob, 1)
    page = alice_client.get(group.get_absolute_url(), {"after": after}).content.decode()
    body = history(page)
    assert "message 1<" in body and "No messages yet" not in body
    assert "before=None" not in page and "Load older messages" not in body
    assert "Load newer messages" not in body and "data-detached" not in body


@pytest.mark.parametrize("before", ["None", "", "0", "-1", "x", "1_0"])
def test_an_htmx_request_for_older_messages_never_gets_a_whole_page(alice_client, bob, group, before):
    fill(group, bob, 3)
    response = alice_client.get(group.get_absolute_url(), {"before": before}, **HTMX)
    assert response.status_code == 400
    assert "<html" not in response.content.decode()
