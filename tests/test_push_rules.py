"""Who is notified when Calpico is closed (notifications/rules.py), as a matrix: each case
sets a situation up, posts one thing, and names who gets a notification, and why."""

import json

import pytest
from asgiref.sync import sync_to_async

from accounts.services import do_block
from notifications import rules
from rooms import presence, services
from rooms.models import Membership, Message, Notice
from rooms.services.core import do_post_system_message
from tests.conftest import make_user, membership
from tests.sockets import answered, connected

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_pages_in_front():
    """What a test says is in front of someone stays in that test."""
    yield
    presence._viewing_here.clear()


def notified(message: Message, actor=None) -> dict[str, str]:
    """username: reason, for a message."""
    names = {n.user_id: n for n in rules.for_message(message, actor.pk if actor else message.author_id)}
    from accounts.models import User

    users = dict(User.objects.filter(pk__in=names).values_list("pk", "username"))
    return {users[uid]: note.reason for uid, note in names.items()}


def say(room, user, text="hello"):
    return services.do_post_message(membership(room, user), text).message


# People's messages


def test_a_direct_message_notifies_the_other_person_not_the_author(alice, bob, direct):
    assert notified(say(direct, alice)) == {"bob": "direct"}


def test_a_group_message_notifies_every_other_member(alice, bob, carol, group):
    assert notified(say(group, alice)) == {"bob": "group", "carol": "group"}


def test_a_muted_group_notifies_only_mentions(alice, bob, carol, group):
    services.do_set_muted(membership(group, bob), True)
    services.do_set_muted(membership(group, carol), True)
    assert notified(say(group, alice, "hi all")) == {}
    assert notified(say(group, alice, "hi @bob")) == {"bob": "mention"}


def test_a_muted_direct_room_notifies_nothing(alice, bob, direct):
    services.do_set_muted(membership(direct, bob), True)
    assert notified(say(direct, alice)) == {}


def test_a_mention_in_an_unmuted_group_is_a_mention(alice, bob, carol, group):
    assert notified(say(group, alice, "@carol look")) == {"bob": "group", "carol": "mention"}


def test_someone_i_blocked_never_notifies_me(alice, bob, carol, group):
    do_block(bob, alice)
    assert notified(say(group, alice, "@bob hi")) == {"carol": "group"}


def test_a_room_i_am_looking_at_notifies_me_nothing(alice, bob, carol, group, direct):
    presence.set_viewing(bob.pk, "page-1", group.pk)
    assert notified(say(group, alice)) == {"carol": "group"}
    # Another room on screen: this one still notifies.
    assert notified(say(direct, alice)) == {"bob": "direct"}
    presence.set_viewing(bob.pk, "page-1", None)
    assert notified(say(group, alice)) == {"bob": "group", "carol": "group"}


def test_a_message_already_read_notifies_nothing(alice, bob, direct):
    message = say(direct, alice)
    services.do_mark_read(membership(direct, bob), message.seq)
    assert notified(message) == {}


def test_a_message_request_says_only_that_there_is_one(alice, bob):
    room = services.do_open_direct_room(alice, bob)
    message = say(room, alice, "Buy my course")
    [note] = rules.for_message(message, alice.pk)
    assert (note.reason, note.title, note.body) == ("request", "New message request", "")
    assert note.tag == f"calpico-request-{room.pk}"


def test_a_declined_request_notifies_nothing(alice, bob):
    room = services.do_open_direct_room(alice, bob)
    services.do_decline_request(membership(room, bob))
    assert notified(say(room, alice)) == {}


def test_a_deleted_message_notifies_nothing(alice, bob, direct):
    message = say(direct, alice)
    services.do_delete_message(alice, message)
    message.refresh_from_db()
    assert notified(message) == {}


def test_an_assistant_reply_is_not_pushed(alice, bob, group):
    message = services.do_post_assistant_message(
        group.pk, persona="Planner", body="Here is a plan.", state=Message.State.DONE
    )
    assert notified(message, actor=None) == {}


def test_inactive_accounts_are_not_notified(alice, bob, direct):
    bob.is_active = False
    bob.save()
    assert notified(say(direct, alice)) == {}


# Joins and leaves: for the owner and admins, never for what they did themselves


@pytest.fixture
def dave(db):
    return make_user("dave", "Dave")


def test_someone_leaving_notifies_owner_and_admins(alice, bob, carol, dave, group):
    services.do_add_members(alice, group, [dave])
    services.do_set_admin(alice, group, bob, True)
    services.do_leave_room(membership(group, carol))
    message = group.messages.filter(event="member_left").get()
    assert notified(message, actor=None) == {"alice": "members", "bob": "members"}


def test_the_owner_is_not_told_of_their_own_additions(alice, bob, carol, dave, group):
    services.do_set_admin(alice, group, bob, True)
    services.do_add_members(alice, group, [dave])
    message = group.messages.filter(event="members_added").last()
    assert notified(message, actor=alice) == {"bob": "members"}


def test_a_muted_group_tells_its_admins_nothing_of_joins(alice, bob, carol, dave, group):
    services.do_set_muted(membership(group, alice), True)
    services.do_add_members(alice, group, [dave])
    services.do_leave_room(membership(group, dave))
    message = group.messages.filter(event="member_left").get()
    assert notified(message, actor=None) == {}


def test_other_system_messages_notify_nobody(alice, bob, carol, group):
    services.do_rename_room(alice, group, "Holidays")
    message = group.messages.filter(event="group_renamed").get()
    assert notified(message, actor=alice) == {}


def test_being_added_notifies_those_added_not_the_one_adding(alice, bob, carol, dave, group):
    notes = rules.for_added(group, alice.pk, [dave.pk, alice.pk])
    assert [(n.user_id, n.reason, n.body) for n in notes] == [
        (dave.pk, "added", "Alice Liddell added you to Trip planning")
    ]


def test_a_notice_is_not_pushed_while_a_page_shows_it(bob):
    notice = Notice.objects.create(user=bob, text="A moderator acted.")
    assert [n.body for n in rules.for_notice(notice)] == ["A moderator acted."]
    presence.set_viewing(bob.pk, "page", 0)
    assert rules.for_notice(notice) == []


# What the notification says


def test_a_burst_counts_only_peoples_unread_messages(alice, bob, direct):
    say(direct, alice, "one")
    do_post_system_message(direct.pk, "group_renamed", actor=alice, title="x")
    message = say(direct, alice, "two")
    [note] = rules.for_message(message, alice.pk)
    assert note.body == "2 new messages\ntwo"


def test_a_mention_names_who_and_where(alice, bob, carol, group):
    [_, carol_note] = sorted(
        rules.for_message(say(group, alice, "@carol see this"), alice.pk), key=lambda n: n.user_id
    )
    assert carol_note.title == "Alice Liddell mentioned you in Trip planning"
    assert carol_note.body == "@carol see this"


# The page tells its socket whether it is in front of the person


@pytest.mark.django_db(transaction=True)
async def test_a_page_in_front_marks_its_room_as_looked_at(alice, bob, group):
    socket = await connected(bob, group)
    await socket.send_to(text_data=json.dumps({"type": "viewing", "visible": True}))
    await answered(socket)
    assert await sync_to_async(presence.viewing)([bob.pk]) == {bob.pk: {group.pk}}
    await socket.send_to(text_data=json.dumps({"type": "viewing", "visible": False}))
    await answered(socket)
    assert await sync_to_async(presence.viewing)([bob.pk]) == {}
    await socket.send_to(text_data=json.dumps({"type": "viewing", "visible": True}))
    await answered(socket)
    await socket.disconnect()
    assert await sync_to_async(presence.viewing)([bob.pk]) == {}


@pytest.mark.django_db(transaction=True)
async def test_a_viewing_frame_without_a_boolean_is_refused(bob, group):
    socket = await connected(bob, group)
    await socket.send_to(text_data=json.dumps({"type": "viewing", "visible": "yes"}))
    [frame] = await answered(socket)
    assert json.loads(frame) == {"type": "error", "message": "viewing needs visible, true or false."}
    await socket.disconnect()


def test_membership_roles_are_what_the_rules_expect():
    assert {Membership.Role.ADMIN, Membership.Role.MEMBER} == set(Membership.Role)


def test_an_encrypted_conversation_never_puts_text_in_a_push(alice, bob):
    import base64

    room = services.do_open_direct_room(alice, bob, encrypted=True)
    services.do_accept_request(membership(room, bob))
    ciphertext = base64.b64encode(b"\x00\x01\x00\x02" + b"\x07" * 60).decode()
    message = say(room, alice, ciphertext)
    assert message.is_encrypted
    [note] = rules.for_message(message, alice.pk)
    assert (note.title, note.body) == ("Alice Liddell", "New message from Alice Liddell")
    assert ciphertext not in note.body


@pytest.mark.parametrize(
    "display_name, expected",
    [
        ("Alice", "Nouveau message d’Alice"),
        ("Émile", "Nouveau message d’Émile"),
        ("ïsa", "Nouveau message d’ïsa"),
        ("Yann", "Nouveau message d’Yann"),
        ("Œdipe", "Nouveau message d’Œdipe"),
        ("Hugo", "Nouveau message de Hugo"),
        ("Bob", "Nouveau message de Bob"),
        ("42", "Nouveau message de 42"),
    ],
)
def test_french_pushes_elide_de_before_a_vowel(alice, bob, display_name, expected):
    """French writes "d’Alice", never "de Alice"; an h is left as it is."""
    import base64

    alice.display_name = display_name
    alice.save()
    bob.language = "fr"
    bob.save()
    room = services.do_open_direct_room(alice, bob, encrypted=True)
    services.do_accept_request(membership(room, bob))
    message = say(room, alice, base64.b64encode(b"\x00\x01\x00\x02" + b"\x07" * 60).decode())
    [note] = rules.for_message(message, alice.pk)
    assert note.body == expected


def test_a_french_group_push_without_text_elides_de(alice, bob, group):
    alice.display_name = "Amélie"
    alice.save()
    bob.language = "fr"
    bob.push_show_text = False
    bob.save()
    [note] = [n for n in rules.for_message(say(group, alice), alice.pk) if n.user_id == bob.pk]
    assert note.body == "Nouveau message d’Amélie dans Trip planning"
