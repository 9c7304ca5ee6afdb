"""Blocking, and message requests from strangers: who can reach whom, and who is told."""

import json
from html import unescape

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from accounts.models import Block
from accounts.services import do_block
from rooms import services
from rooms.models import Membership, Message, Room
from tests.conftest import membership, post
from tests.sockets import answered, connected, delivered, html, json_frames


def text(response) -> str:
    """The page as a person reads it: entities like &#x27; turned back into characters."""
    return unescape(response.content.decode())


# Blocking


def test_block_and_unblock_from_a_profile(alice, alice_client, bob):
    response = alice_client.post(reverse("accounts:block", args=["bob"]))
    assert response.status_code == 302
    assert Block.objects.filter(blocker=alice, blocked=bob).exists()
    assert "You blocked Bob Builder" in text(alice_client.get(bob.get_absolute_url()))
    assert "Bob Builder" in text(alice_client.get(reverse("accounts:blocked")))
    alice_client.post(reverse("accounts:unblock", args=["bob"]))
    assert not Block.objects.exists()


def test_nobody_can_block_themself(alice_client):
    alice_client.post(reverse("accounts:block", args=["alice"]))
    assert not Block.objects.exists()


def test_someone_i_blocked_cannot_open_a_direct_room_with_me(alice, bob, bob_client):
    do_block(alice, bob)
    response = bob_client.post(reverse("rooms:open_direct", args=["alice"]))
    assert response.status_code == 302 and not Room.objects.filter(kind="direct").exists()
    page = text(bob_client.get(response["Location"]))
    assert "You can't start a conversation with this person." in page
    assert "blocked you" not in page.lower()


def test_someone_i_blocked_cannot_send_into_our_room_and_is_not_told_why(alice, bob, bob_client, direct):
    do_block(alice, bob)
    response = post(bob_client, direct, "are you there?")
    assert response.status_code == 422
    page = text(response)
    assert "You can't send messages in this conversation." in page and "are you there?" in page
    assert "blocked you" not in page.lower()
    room_page = text(bob_client.get(direct.get_absolute_url()))
    assert "You can't send messages in this conversation." in room_page and 'id="id_body"' not in room_page
    assert not Message.objects.filter(room=direct, author=bob).exists()


def test_the_blocker_is_told_to_unblock_to_send(alice, bob, alice_client, direct):
    do_block(alice, bob)
    page = text(alice_client.get(direct.get_absolute_url()))
    assert "You blocked this person. Unblock them to send messages." in page


def test_someone_i_blocked_cannot_add_me_to_a_group(alice, bob, carol, bob_client):
    room = services.do_create_group(bob, "Bob's group", [carol])
    do_block(alice, bob)
    response = bob_client.post(reverse("rooms:add_members", args=[room.pk]), {"members": "alice"})
    assert response.status_code == 422
    assert "Alice Liddell can't be added to this group." in text(response)
    assert not Membership.objects.filter(room=room, user=alice).exists()


def test_in_a_shared_group_their_messages_are_collapsed_for_me_only(
    alice, bob, alice_client, bob_client, group
):
    do_block(alice, bob)
    post(bob_client, group, "hello group")
    page = text(alice_client.get(group.get_absolute_url()))
    assert f'data-blocked="{bob.pk}"' in page
    # Nor does the sidebar quote them.
    start = page.index('id="sidebar"')
    sidebar = page[start : page.index("</nav>", start)]
    assert "hello group" not in sidebar and "Message from a blocked account" in sidebar
    assert 'data-blocked=""' in text(bob_client.get(group.get_absolute_url()))


pytestmark_live = pytest.mark.django_db(transaction=True)


@pytestmark_live
async def test_a_blocked_authors_messages_never_notify_me(alice, bob, group, direct):
    await sync_to_async(do_block)(alice, bob)
    elsewhere = await connected(alice, direct)
    viewing = await connected(alice, group)
    await sync_to_async(lambda: services.do_post_message(membership(group, bob), "@alice look!"))()
    away = await delivered(elsewhere)
    here = await delivered(viewing)
    assert "toast" not in html(away) and not json_frames(away, "unread")
    assert "sidebar-preview" not in html(away)
    # The page showing the room gets the message, which it collapses itself.
    assert "@alice look!" in html(here) or "look!" in html(here)
    await elsewhere.disconnect()
    await viewing.disconnect()


@pytestmark_live
async def test_blocking_while_connected_takes_effect_at_once(alice, bob, group, direct):
    socket = await connected(alice, direct)
    await sync_to_async(do_block)(alice, bob)
    update = json_frames(await delivered(socket), "blocked")
    assert update == [{"type": "blocked", "users": [bob.pk]}]
    await sync_to_async(lambda: services.do_post_message(membership(group, bob), "ping"))()
    assert "toast" not in html(await delivered(socket))
    await socket.disconnect()


@pytestmark_live
async def test_the_blocked_person_is_not_told(alice, bob, group):
    socket = await connected(bob, group)
    await sync_to_async(do_block)(alice, bob)
    assert not any("block" in f for f in await delivered(socket))
    await socket.disconnect()


@pytestmark_live
async def test_typing_from_a_blocked_person_is_not_shown(alice, bob, group):
    await sync_to_async(do_block)(alice, bob)
    alice_socket = await connected(alice, group)
    bob_socket = await connected(bob, group)
    await bob_socket.send_to(text_data=json.dumps({"type": "typing", "room": group.pk}))
    await answered(bob_socket)  # bob's socket has sent it on
    assert not json_frames(await delivered(alice_socket), "typing")
    await alice_socket.disconnect()
    await bob_socket.disconnect()


# Message requests


def test_a_first_message_from_a_stranger_is_a_request(alice, mallory, mallory_client, alice_client):
    response = mallory_client.post(reverse("rooms:open_direct", args=["alice"]))
    room = Room.objects.get(kind="direct")
    assert Membership.objects.get(room=room, user=alice).request == "pending"
    assert Membership.objects.get(room=room, user=mallory).request == ""
    post(mallory_client, room, "hi, we met at the conference")
    index = text(alice_client.get(reverse("rooms:index")))
    assert f'id="sidebar-entry-{room.pk}"' not in index
    assert "Message requests" in index
    requests = text(alice_client.get(reverse("rooms:requests")))
    assert "we met at the conference" in requests
    assert response.status_code == 302


def test_people_who_share_a_group_are_not_strangers(alice, bob, bob_client, group):
    bob_client.post(reverse("rooms:open_direct", args=["alice"]))
    room = Room.objects.get(kind="direct")
    assert Membership.objects.get(room=room, user=alice).request == ""


def _request_from_mallory(mallory_client):
    mallory_client.post(reverse("rooms:open_direct", args=["alice"]))
    room = Room.objects.get(kind="direct")
    post(mallory_client, room, "hello?")
    return room


def test_accepting_makes_it_a_normal_direct_room(alice_client, mallory_client, alice):
    room = _request_from_mallory(mallory_client)
    page = text(alice_client.get(room.get_absolute_url()))
    assert "Message request." in page and 'id="id_body"' not in page
    alice_client.post(reverse("rooms:accept_request", args=[room.pk]))
    assert Membership.objects.get(room=room, user=alice).request == ""
    assert f'id="sidebar-entry-{room.pk}"' in text(alice_client.get(reverse("rooms:index")))
    assert post(alice_client, room, "hi back").status_code == 302


def test_deleting_a_request_hides_it_and_the_sender_is_not_told(alice_client, mallory_client, alice):
    room = _request_from_mallory(mallory_client)
    alice_client.post(reverse("rooms:decline_request", args=[room.pk]))
    assert alice_client.get(room.get_absolute_url()).status_code == 404
    assert "hello?" not in text(alice_client.get(reverse("rooms:requests")))
    # The sender can still write; it goes nowhere near alice's list.
    assert post(mallory_client, room, "still there?").status_code == 302
    assert f"sidebar-entry-{room.pk}" not in text(alice_client.get(reverse("rooms:index")))


def test_blocking_from_a_request(alice_client, mallory_client, alice, mallory):
    room = _request_from_mallory(mallory_client)
    alice_client.post(reverse("rooms:block_request", args=[room.pk]))
    assert Block.objects.filter(blocker=alice, blocked=mallory).exists()
    assert post(mallory_client, room, "again").status_code == 422


def test_opening_a_declined_conversation_myself_brings_it_back(alice, alice_client, mallory_client):
    room = _request_from_mallory(mallory_client)
    alice_client.post(reverse("rooms:decline_request", args=[room.pk]))
    alice_client.post(reverse("rooms:open_direct", args=["mallory"]))
    assert Membership.objects.get(room=room, user=alice).request == ""


def test_strangers_messaged_per_day_are_capped(settings, mallory, mallory_client):
    from tests.conftest import make_user

    settings.RATE_STRANGERS_PER_DAY = 2
    for name in ("one", "two", "three"):
        make_user(f"stranger_{name}")
    assert mallory_client.post(reverse("rooms:open_direct", args=["stranger_one"])).status_code == 302
    assert mallory_client.post(reverse("rooms:open_direct", args=["stranger_two"])).status_code == 302
    response = mallory_client.post(reverse("rooms:open_direct", args=["stranger_three"]), follow=True)
    assert "You are messaging people you don't know too often. Try again in" in text(response)
    assert Room.objects.filter(kind="direct").count() == 2


@pytestmark_live
async def test_a_request_notifies_nothing_until_accepted(alice, mallory):
    socket = await connected(alice)
    room = await sync_to_async(services.do_open_direct_room)(mallory, alice)
    await sync_to_async(lambda: services.do_post_message(membership(room, mallory), "psst"))()
    assert html(await delivered(socket)) == ""
    alice_membership = await sync_to_async(membership)(room, alice)
    await sync_to_async(services.do_accept_request)(alice_membership)
    assert f"sidebar-entry-{room.pk}" in html(await delivered(socket))
    await sync_to_async(lambda: services.do_post_message(membership(room, mallory), "now?"))()
    assert "toast" in html(await delivered(socket))
    await socket.disconnect()


def test_a_stranger_does_not_see_whether_i_am_online(alice, mallory_client, mallory):
    from rooms import presence

    presence.refresh(alice.pk)
    mallory_client.post(reverse("rooms:open_direct", args=["alice"]))
    room = Room.objects.get(kind="direct")
    page = text(mallory_client.get(room.get_absolute_url()))
    assert f'class="presence" data-presence-user="{alice.pk}"' in page
    assert f'class="presence is-online" data-presence-user="{alice.pk}"' not in page


def test_replying_to_a_request_accepts_it(alice, alice_client, mallory_client):
    room = _request_from_mallory(mallory_client)
    services.do_post_message(membership(room, alice), "who is this?")
    assert Membership.objects.get(room=room, user=alice).request == ""
    assert f'id="sidebar-entry-{room.pk}"' in text(alice_client.get(reverse("rooms:index")))


# Found in review


def test_someone_i_blocked_cannot_put_me_in_a_new_group(alice, bob, bob_client):
    do_block(alice, bob)
    response = bob_client.post(reverse("rooms:new_group"), {"title": "Gotcha", "members": "alice"})
    assert response.status_code == 422
    assert "Alice Liddell can't be added to this group." in text(response)
    assert not Room.objects.filter(title="Gotcha").exists()


def test_someone_i_blocked_cannot_rewrite_their_old_messages(alice, bob, bob_client, direct):
    message = services.do_post_message(membership(direct, bob), "polite").message
    do_block(alice, bob)
    url = reverse("rooms:edit_message", args=[direct.pk, message.pk])
    response = bob_client.post(url, {"body": "rude"})
    assert response.status_code == 422 and "You can't send messages in this conversation." in text(response)
    message.refresh_from_db()
    assert message.body == "polite"


def test_requests_from_people_i_blocked_are_not_listed(alice, alice_client, mallory, mallory_client):
    room = _request_from_mallory(mallory_client)
    do_block(alice, mallory)
    assert "Message requests" not in text(alice_client.get(reverse("rooms:index")))
    assert "hello?" not in text(alice_client.get(reverse("rooms:requests")))
    assert room.pk


@pytestmark_live
async def test_a_blocked_authors_edit_does_not_reach_my_sidebar(alice, bob, group, direct):
    message = await sync_to_async(lambda: services.do_post_message(membership(group, bob), "hi").message)()
    await sync_to_async(do_block)(alice, bob)
    socket = await connected(alice, direct)
    await sync_to_async(services.do_edit_message)(bob, message, "nasty edit")
    assert "nasty edit" not in html(await delivered(socket))
    await socket.disconnect()


@pytestmark_live
async def test_a_new_direct_conversation_appears_live_for_the_other_person(alice, bob, group):
    socket = await connected(bob)
    room = await sync_to_async(services.do_open_direct_room)(alice, bob)
    received = html(await delivered(socket))
    assert f'id="sidebar-entry-{room.pk}"' in received and "Alice Liddell" in received
    assert "You were added" not in received
    await sync_to_async(lambda: services.do_post_message(membership(room, alice), "hey bob"))()
    assert "hey bob" in html(await delivered(socket))
    await socket.disconnect()
