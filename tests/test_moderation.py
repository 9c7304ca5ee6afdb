"""Reports from members, and moderators acting on them in the admin, every step audited."""

from html import unescape

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.urls import reverse

from accounts.models import User
from assistant import runner
from rooms import services
from rooms.consumers import CLOSE_UNAUTHENTICATED
from rooms.models import Membership, Message, ModerationAction, Notice, Report
from rooms.services import moderation
from tests.conftest import client_for, membership
from tests.sockets import closed_with, connected


def say(user, room, body):
    return services.do_post_message(membership(room, user), body).message


def report(client, message, reason="harassment", text=""):
    url = reverse("rooms:report", args=[message.room_id, message.pk])
    return client.post(url, {"reason": reason, "text": text})


@pytest.fixture
def moderator(db):
    return User.objects.create_user("mod", password="x" * 12, is_staff=True, is_superuser=True)


@pytest.fixture
def moderator_client(moderator):
    return client_for(moderator)


# Reporting


def test_a_member_reports_a_message_with_a_snapshot(alice, bob, carol_client, group):
    for i in range(12):
        say(alice, group, f"earlier {i}")
    rude = say(bob, group, "you are all terrible")
    response = report(carol_client, rude, "harassment", "this is the third time")
    assert response.status_code == 302
    filed = Report.objects.get()
    assert (filed.reason, filed.text, filed.author, filed.room) == (
        "harassment",
        "this is the third time",
        bob,
        group,
    )
    snapshot = filed.snapshot
    assert snapshot["message"]["body"] == "you are all terrible" and snapshot["message"]["author"] == "bob"
    assert snapshot["room"]["title"] == "Trip planning"
    assert [m["body"] for m in snapshot["context"]] == [f"earlier {i}" for i in range(2, 12)]
    # The snapshot stands even when the author edits the message afterwards.
    services.do_edit_message(bob, rude, "you are all lovely")
    filed.refresh_from_db()
    assert filed.snapshot["message"]["body"] == "you are all terrible"


def test_the_same_message_cannot_be_reported_twice(bob, carol_client, group):
    message = say(bob, group, "spam spam spam")
    report(carol_client, message, "spam")
    response = report(carol_client, message, "spam")
    assert response.status_code == 422
    assert "You already reported this message." in unescape(response.content.decode())
    assert Report.objects.count() == 1


@pytest.mark.parametrize(
    ("reason", "error"), [("", "This field is required."), ("rude", "Select a valid choice")]
)
def test_a_report_needs_a_reason(bob, carol_client, group, reason, error):
    response = report(carol_client, say(bob, group, "hm"), reason)
    assert response.status_code == 422 and error in response.content.decode()


def test_nobody_reports_their_own_message_or_system_messages(alice, alice_client, group):
    own = report(alice_client, say(alice, group, "mine"))
    assert own.status_code == 422 and "your own message" in unescape(own.content.decode())
    system = Message.objects.filter(room=group, kind="system").first()
    assert report(alice_client, system).status_code == 422


def test_non_members_cannot_report(bob, mallory_client, group):
    assert report(mallory_client, say(bob, group, "hm")).status_code == 404


def test_a_report_of_an_assistant_reply_keeps_the_runs_prompt(fake_openai, alice, carol_client, group):
    say(alice, group, "@assistant tell me something")
    runner.run_pending()
    reply = Message.objects.get(room=group, kind="assistant")
    report(carol_client, reply, "other", "made something up")
    run = Report.objects.get().snapshot["assistant_run"]
    assert run["model"] == "gpt-4o-mini" and run["requested_by"] == "alice"
    assert run["prompt"][-1]["content"] == "Alice Liddell: @assistant tell me something"


# The report queue in the admin


def act(client, action, reports, reason="breaks the rules"):
    return client.post(
        reverse("admin:rooms_report_changelist"),
        {"action": action, "_selected_action": [r.pk for r in reports], "confirm": "yes", "reason": reason},
    )


def test_the_queue_shows_open_reports_first_with_their_snapshot(moderator_client, alice, bob, carol, group):
    old = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "old"), reason="spam", text=""
    )
    moderation.do_dismiss_report(User.objects.get(username="mod"), old)
    fresh = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "fresh one"), reason="spam", text=""
    )
    page = moderator_client.get(reverse("admin:rooms_report_changelist")).content.decode()
    assert page.index(f">{fresh.pk}<") < page.index(f">{old.pk}<")
    detail = moderator_client.get(reverse("admin:rooms_report_change", args=[fresh.pk])).content.decode()
    assert "fresh one" in detail


def test_an_action_asks_why_first(moderator_client, bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    response = moderator_client.post(
        reverse("admin:rooms_report_changelist"), {"action": "dismiss", "_selected_action": [filed.pk]}
    )
    assert response.status_code == 200 and "Why (kept in the audit log)" in response.content.decode()
    assert Report.objects.get().status == "open"


def test_dismissing_tells_the_reporter_and_is_audited(moderator, moderator_client, bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    act(moderator_client, "dismiss", [filed], reason="not spam")
    filed.refresh_from_db()
    assert filed.status == "dismissed" and filed.resolved_by == moderator
    entry = ModerationAction.objects.get()
    assert (entry.moderator, entry.action, entry.reason, entry.report) == (
        moderator,
        "dismiss report",
        "not spam",
        filed,
    )
    assert Notice.objects.get(user=carol).text.startswith("A moderator reviewed a message you reported")


def test_deleting_the_message_shows_removed_by_a_moderator(moderator_client, alice_client, bob, carol, group):
    message = say(bob, group, "awful thing")
    filed = moderation.do_report_message(
        carol, membership(group, carol), message, reason="harassment", text=""
    )
    act(moderator_client, "delete_message", [filed])
    message.refresh_from_db()
    assert message.is_deleted and message.removed_by == "moderator" and message.body == ""
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "removed by a moderator" in page and "awful thing" not in page
    assert ModerationAction.objects.get().action == "delete message"
    assert "the message was removed" in Notice.objects.get(user=carol).text


def test_removing_the_author_from_the_room(moderator_client, bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    act(moderator_client, "remove_author", [filed])
    assert not Membership.objects.filter(room=group, user=bob).exists()
    assert Message.objects.filter(room=group, body="Bob Builder was removed by a moderator").exists()
    assert ModerationAction.objects.get().action == "remove from room"


def test_suspending_the_author_ends_their_sessions(moderator_client, bob, bob_client, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    assert Session.objects.count() >= 2
    act(moderator_client, "suspend_author", [filed], reason="repeated spam")
    bob.refresh_from_db()
    assert not bob.is_active
    assert bob_client.get(group.get_absolute_url()).status_code == 302  # signed out: to the login page
    entry = ModerationAction.objects.get()
    assert (entry.action, entry.target_user, entry.reason) == ("suspend", bob, "repeated spam")
    # The session is gone from the session cache too: lifting the suspension does not
    # bring the old sign-in back.
    bob.is_active = True
    bob.save(update_fields=["is_active"])
    assert bob_client.get(group.get_absolute_url()).status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_suspending_closes_open_sockets_at_once(bob, group):
    moderator = await sync_to_async(User.objects.create_user)("mod", password="x" * 12, is_staff=True)
    socket = await connected(bob, group)
    await sync_to_async(moderation.do_suspend)(moderator, bob, reason="spam")
    await closed_with(socket, CLOSE_UNAUTHENTICATED)


def test_suspend_and_unsuspend_from_user_search(moderator_client, bob):
    changelist = reverse("admin:accounts_user_changelist")
    assert "bob" in moderator_client.get(changelist, {"q": "bob"}).content.decode()
    moderator_client.post(
        changelist,
        {"action": "suspend", "_selected_action": [bob.pk], "confirm": "yes", "reason": "spam wave"},
    )
    bob.refresh_from_db()
    assert not bob.is_active
    moderator_client.post(
        changelist,
        {"action": "unsuspend", "_selected_action": [bob.pk], "confirm": "yes", "reason": "appeal"},
    )
    bob.refresh_from_db()
    assert bob.is_active
    assert list(ModerationAction.objects.order_by("created_at").values_list("action", "reason")) == [
        ("suspend", "spam wave"),
        ("unsuspend", "appeal"),
    ]


def test_the_audit_log_cannot_be_edited_or_deleted(moderator, moderator_client, bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    act(moderator_client, "dismiss", [filed])
    entry = ModerationAction.objects.get()
    listing = moderator_client.get(reverse("admin:rooms_moderationaction_changelist")).content.decode()
    assert "dismiss report" in listing
    url = reverse("admin:rooms_moderationaction_change", args=[entry.pk])
    moderator_client.post(url, {"action": "nothing happened", "reason": "edited"})
    assert moderator_client.post(
        reverse("admin:rooms_moderationaction_delete", args=[entry.pk]), {"post": "yes"}
    )
    entry.refresh_from_db()
    assert entry.action == "dismiss report" and entry.reason == "breaks the rules"
    assert ModerationAction.objects.count() == 1


def test_only_staff_moderate(bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    with pytest.raises(Exception, match="Only moderators"):
        moderation.do_dismiss_report(carol, filed)


@pytest.mark.django_db(transaction=True)
async def test_the_reporter_gets_a_notice_live_or_on_next_visit(moderator, bob, carol, group):
    filed = await sync_to_async(
        lambda: moderation.do_report_message(
            carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
        )
    )()
    socket = await connected(carol, group)
    await sync_to_async(moderation.do_dismiss_report)(moderator, filed)
    frame = await socket.receive_from(timeout=5)
    assert "From the moderators" in frame and "took no action" in frame
    await socket.disconnect()
    # Seen once: a new page does not show it again.
    again = await connected(carol, group)
    assert await again.receive_nothing(timeout=0.3)
    await again.disconnect()


# Found in review


def test_deleted_messages_cannot_be_reported(bob, carol_client, group):
    message = say(bob, group, "gone soon")
    services.do_delete_message(bob, message)
    response = report(carol_client, message)
    assert response.status_code == 422 and "nothing left to report" in unescape(response.content.decode())


def test_acting_twice_on_a_report_is_refused_and_not_audited(moderator, bob, carol, group):
    filed = moderation.do_report_message(
        carol, membership(group, carol), say(bob, group, "x"), reason="spam", text=""
    )
    moderation.do_dismiss_report(moderator, filed)
    filed.refresh_from_db()
    with pytest.raises(Exception, match="already resolved"):
        moderation.do_remove_reported_message(moderator, filed)
    assert ModerationAction.objects.count() == 1


def test_a_staff_member_cannot_suspend_a_superuser(db, bob):
    staff = User.objects.create_user("helper", password="x" * 12, is_staff=True)
    boss = User.objects.create_superuser("boss", password="x" * 12)
    with pytest.raises(Exception, match="Only a superuser"):
        moderation.do_suspend(staff, boss)
    boss.refresh_from_db()
    assert boss.is_active


def test_moderators_cannot_remove_someone_from_a_direct_room(moderator, alice, bob, direct):
    filed = moderation.do_report_message(
        alice, membership(direct, alice), say(bob, direct, "x"), reason="spam", text=""
    )
    with pytest.raises(Exception, match="Only groups"):
        moderation.do_remove_author_from_room(moderator, filed)
    assert Membership.objects.filter(room=direct, user=bob).exists()


def test_removing_a_groups_last_member_archives_it(alice, bob):
    room = services.do_create_group(alice, "Pair", [bob])
    services.do_leave_room(membership(room, alice))
    services.do_remove_member_as_moderator(room, bob)
    room.refresh_from_db()
    assert room.archived_at is not None and room.owner is None
