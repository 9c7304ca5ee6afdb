"""Read receipts ("Seen"): whose read position is announced, to whom a socket passes it on,
what the room page gives the viewer, and the privacy switch that turns it all off."""

import asyncio
import json
import re

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from accounts.models import User
from accounts.services import do_block, do_unblock
from assistant.private import do_open_private_room
from rooms import services
from rooms.live_groups import room_group, user_group
from rooms.models import Membership
from tests.conftest import HTMX, client_for, make_user, membership, post
from tests.sockets import answered, apost, connected, delivered, json_frames

pytestmark = pytest.mark.django_db
# Sockets read the database from other threads: those tests commit for real.
live = pytest.mark.django_db(transaction=True)


def reads(sent, room) -> list[tuple[int, int | None]]:
    """The (reader, seq) of every read position announced to the room."""
    return [
        (event["user_id"], event["seq"])
        for event in sent.to(room_group(room.pk))
        if event["type"] == "room.read"
    ]


def open_room(client, room):
    response = client.get(room.get_absolute_url())
    assert response.status_code == 200
    return response.content.decode()


def read_positions(page: str) -> dict[int, int] | None:
    """What the page gives its script: user id to read position; None when it has no receipts."""
    match = re.search(r'data-read-positions="([^"]*)"', page)
    if match is None:
        return None
    return {int(u): int(s) for u, s in (pair.split(":") for pair in match.group(1).split())}


def switch_receipts(user: User, enabled: bool) -> None:
    services.do_set_read_receipts(user, enabled)


# What is announced


def test_opening_a_room_tells_it_how_far_i_read(alice, bob, bob_client, direct, events):
    """Bob opens the room after Alice wrote: the room is told Bob read up to her message."""
    message = services.do_post_message(membership(direct, alice), "Are you coming?").message
    with events() as sent:
        open_room(bob_client, direct)
    assert reads(sent, direct) == [(bob.pk, message.seq)]
    with events() as sent:
        open_room(bob_client, direct)  # nothing new read: nothing written, nothing told
    assert reads(sent, direct) == []


def test_reads_from_the_page_are_announced_once_per_move(alice, bob, group, events):
    """The socket's batched reads (do_mark_read_in_rooms) tell the room, once per move."""
    message = services.do_post_message(membership(group, alice), "Train or car?").message
    with events() as sent:
        services.do_mark_read_in_rooms(bob.pk, {group.pk: message.seq})
        services.do_mark_read_in_rooms(bob.pk, {group.pk: message.seq})
    assert reads(sent, group) == [(bob.pk, message.seq)]


def test_a_read_past_my_own_or_the_assistants_messages_alone_is_not_announced(alice, bob, group, events):
    """Only a move past a message someone else wrote changes a "Seen": the rest stay quiet."""
    services.do_mark_read(membership(group, bob), group.last_seq)
    with events() as sent:
        mine = services.do_post_message(membership(group, bob), "Mine").message
        services.do_mark_read(membership(group, bob), mine.seq)
        reply = services.do_post_assistant_message(group.pk, persona="Planner", body="Hi", state="done")
        services.do_mark_read(membership(group, bob), reply.seq)
        services.do_post_system_message(group.pk, "member_left", user="Someone")
        group.refresh_from_db()
        services.do_mark_read(membership(group, bob), group.last_seq)
    assert reads(sent, group) == []


def test_a_read_is_never_announced_beyond_the_rooms_last_message(alice, bob, group, events):
    message = services.do_post_message(membership(group, alice), "Hello").message
    with events() as sent:
        services.do_mark_read_in_rooms(bob.pk, {group.pk: 2**63 - 1})
    assert reads(sent, group) == [(bob.pk, message.seq)]
    assert membership(group, bob).last_read_seq == message.seq


def test_posting_past_messages_i_had_not_read_tells_the_room(alice, bob, bob_client, direct, events):
    """Answering reads what I answer: Alice's message is seen. Posting when I had read it all
    tells nothing more."""
    services.do_mark_read(membership(direct, bob), direct.last_seq)
    services.do_post_message(membership(direct, alice), "Lunch?")
    with events() as sent:
        post(bob_client, direct, "Yes!")
    answer = direct.messages.get(body="Yes!")
    assert reads(sent, direct) == [(bob.pk, answer.seq)]
    with events() as sent:
        post(bob_client, direct, "Where?")
    assert reads(sent, direct) == []


def test_an_unanswered_message_request_is_read_in_silence(alice, bob, bob_client, events):
    """Bob opens a request from a stranger: "They won't know you've seen this unless you reply"."""
    room = services.do_open_direct_room(alice, bob)
    services.do_post_message(membership(room, alice), "Hi, we met at the conference")
    assert membership(room, bob).request == Membership.Request.PENDING
    with events() as sent:
        page = open_room(bob_client, room)
    assert "They won't know you've seen this unless you reply" in page
    assert reads(sent, room) == []
    # Alice's page is not given Bob's position either.
    assert bob.pk not in read_positions(open_room(client_for(alice), room))
    with events() as sent:
        post(bob_client, room, "Hi Alice!")
    assert [reader for reader, _ in reads(sent, room)] == [bob.pk]


def test_my_private_assistant_room_announces_no_reads(alice, alice_client, events):
    room = do_open_private_room(alice)
    services.do_post_assistant_message(room.pk, persona="Assistant", body="Hello", state="done")
    with events() as sent:
        page = open_room(alice_client, room)
    assert reads(sent, room) == []
    assert read_positions(page) is None


# The privacy switch


@pytest.mark.parametrize("path", ["page", "socket_flush", "http_read", "post"])
def test_with_read_receipts_off_my_read_position_is_never_announced(
    alice, bob, bob_client, group, direct, events, path
):
    """Whichever way Bob reads (opening the room, his page's reads, the read endpoint,
    answering), nothing about it is sent to any group, so no socket can pass it on."""
    switch_receipts(bob, False)
    bob.refresh_from_db()
    message = services.do_post_message(membership(direct, alice), "Did you read this?").message
    with events() as sent:
        if path == "page":
            open_room(bob_client, direct)
        elif path == "socket_flush":
            services.do_mark_read_in_rooms(bob.pk, {direct.pk: message.seq})
        elif path == "http_read":
            assert (
                bob_client.post(
                    reverse("rooms:mark_read", args=[direct.pk]), {"seq": message.seq}
                ).status_code
                == 204
            )
        else:
            post(bob_client, direct, "Answering without a receipt")
    assert not [event for _, event in sent if event["type"] == "room.read"]
    # The position itself is still kept: it counts Bob's unread messages.
    assert membership(direct, bob).last_read_seq >= message.seq


def test_switching_read_receipts_off_and_on_tells_my_rooms_and_my_pages(
    alice, alice_client, bob, group, direct, events
):
    """Off: my rooms' pages forget my position, my own sockets stop passing others' on. On:
    they get it again."""
    services.do_mark_read(membership(group, alice), group.last_seq)
    page = alice_client.get(reverse("rooms:privacy")).content.decode()
    assert 'name="read_receipts" id="read-receipts" checked' in page
    with events() as sent:
        response = alice_client.post(reverse("rooms:privacy"), {})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.read_receipts is False
    assert sent.to(user_group(alice.pk)) == [{"type": "user.receipts", "enabled": False}]
    assert reads(sent, group) == [(alice.pk, None)]
    assert reads(sent, direct) == [(alice.pk, None)]
    assert "Read receipts are off." in alice_client.get(reverse("rooms:privacy")).content.decode()

    with events() as sent:
        alice_client.post(reverse("rooms:privacy"), {"read_receipts": "on"})
    alice.refresh_from_db()
    assert alice.read_receipts is True
    assert sent.to(user_group(alice.pk)) == [{"type": "user.receipts", "enabled": True}]
    assert reads(sent, group) == [(alice.pk, group.last_seq)]


def test_the_privacy_page_needs_a_signed_in_person(client):
    response = client.get(reverse("rooms:privacy"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# What the room page gives the viewer


def test_the_room_page_gives_others_read_positions(alice, alice_client, bob, carol, group):
    message = services.do_post_message(membership(group, alice), "Train or car?").message
    services.do_mark_read(membership(group, bob), message.seq)
    page = open_room(alice_client, group)
    assert 'data-receipts="group"' in page
    positions = read_positions(page)
    assert positions[bob.pk] == message.seq
    assert carol.pk in positions and alice.pk not in positions
    # The faces "Seen by" draws from, for every member.
    assert f'class="seen__face" data-user-id="{bob.pk}" data-name="Bob Builder"' in page


def test_the_room_page_leaves_out_who_does_not_share(alice, alice_client, bob, carol, group):
    switch_receipts(bob, False)
    positions = read_positions(open_room(alice_client, group))
    assert bob.pk not in positions and carol.pk in positions


def test_with_read_receipts_off_i_am_given_nobodys(alice, alice_client, bob, group):
    switch_receipts(alice, False)
    assert read_positions(open_room(alice_client, group)) == {}


@pytest.mark.parametrize("who_blocks", ["alice", "bob"])
def test_blocked_people_are_left_out_both_ways(
    alice, alice_client, bob, bob_client, carol, group, who_blocks
):
    """Whoever blocked whom: neither is given the other's read position."""
    if who_blocks == "alice":
        do_block(alice, bob)
    else:
        do_block(bob, alice)
    alice_sees = read_positions(open_room(alice_client, group))
    bob_sees = read_positions(open_room(bob_client, group))
    assert bob.pk not in alice_sees and carol.pk in alice_sees
    assert alice.pk not in bob_sees and carol.pk in bob_sees


def test_the_room_page_costs_no_more_queries_with_receipts(
    alice, alice_client, bob, django_assert_max_num_queries
):
    """A group of 30 who all read, some blocked, unread messages: the budget of
    tests/test_room_page.py holds, and an older page too."""
    people = [make_user(f"member{i}") for i in range(29)]
    room = services.do_create_group(alice, "Busy", people)
    for person in people[:10]:
        services.do_post_message(membership(room, person), f"hello from {person.username}")
        services.do_mark_read(membership(room, person), room.last_seq + 20)
    do_block(alice, people[0])
    do_block(people[1], alice)
    switch_receipts(people[2], False)
    with django_assert_max_num_queries(10):
        page = open_room(alice_client, room)
    positions = read_positions(page)
    assert len(positions) == 26 and people[0].pk not in positions and people[2].pk not in positions
    with django_assert_max_num_queries(4):
        alice_client.get(room.get_absolute_url(), {"before": 10, "unread_after": 3}, **HTMX)


# The socket: what it passes on


@live
async def test_a_read_reaches_the_page_showing_the_room_as_seen(alice, bob, direct, monkeypatch):
    """Bob's page reads Alice's message: Alice's page showing the room is sent `seen`; her
    page elsewhere and Bob's own pages are not."""
    monkeypatch.setattr("rooms.consumers.READ_FLUSH_SECONDS", 0.05)
    message = (await apost(direct, alice, "Did you finish the book?")).message
    alice_here = await connected(alice, direct)
    alice_elsewhere = await connected(alice)
    bob_socket = await connected(bob, direct)
    await bob_socket.send_to(text_data=json.dumps({"type": "read", "room": direct.pk, "seq": message.seq}))
    await answered(bob_socket)
    await asyncio.sleep(0.2)  # the flush, then the announcement
    assert json_frames(await delivered(alice_here), "seen") == [
        {"type": "seen", "room": direct.pk, "positions": {str(bob.pk): message.seq}}
    ]
    assert json_frames(await delivered(alice_elsewhere), "seen") == []
    assert json_frames(await delivered(bob_socket), "seen") == []
    for socket in (alice_here, alice_elsewhere, bob_socket):
        await socket.disconnect()


@live
async def test_with_read_receipts_off_my_reads_never_reach_a_socket(alice, bob, direct, monkeypatch):
    """The real path, socket to socket: Bob (receipts off) reads; Alice's page hears nothing."""
    monkeypatch.setattr("rooms.consumers.READ_FLUSH_SECONDS", 0.05)
    await sync_to_async(switch_receipts)(bob, False)
    message = (await apost(direct, alice, "Did you read this?")).message
    alice_socket = await connected(alice, direct)
    bob_socket = await connected(bob, direct)
    await bob_socket.send_to(text_data=json.dumps({"type": "read", "room": direct.pk, "seq": message.seq}))
    await answered(bob_socket)
    await asyncio.sleep(0.2)
    await bob_socket.disconnect()  # writes whatever is pending
    assert json_frames(await delivered(alice_socket), "seen") == []
    position = await sync_to_async(lambda: membership(direct, bob).last_read_seq)()
    assert position == message.seq
    await alice_socket.disconnect()


@live
async def test_a_socket_passes_on_no_reads_to_a_viewer_who_shares_none(alice, bob, direct):
    """Alice has read receipts off: her socket drops Bob's reads (and Bob's are still sent)."""
    await sync_to_async(switch_receipts)(alice, False)
    alice_socket = await connected(alice, direct)
    await apost(direct, alice, "Hello?")
    await sync_to_async(lambda: open_room(client_for(bob), direct))()
    assert json_frames(await delivered(alice_socket), "seen") == []
    await alice_socket.disconnect()


@live
@pytest.mark.parametrize("who_blocks", ["alice", "bob"])
async def test_a_socket_passes_on_no_reads_between_blocked_people(alice, bob, carol, group, who_blocks):
    """Alice blocked Bob, or Bob blocked Alice, while both pages are open: Bob's reads no
    longer reach Alice's page; Carol's still do."""
    alice_socket = await connected(alice, group)
    await delivered(alice_socket)
    if who_blocks == "alice":
        await sync_to_async(do_block)(alice, bob)
    else:
        await sync_to_async(do_block)(bob, alice)
    await delivered(alice_socket)
    await apost(group, alice, "Train or car?")
    await sync_to_async(lambda: open_room(client_for(bob), group))()
    await sync_to_async(lambda: open_room(client_for(carol), group))()
    seen = json_frames(await delivered(alice_socket), "seen")
    assert [list(frame["positions"]) for frame in seen if not frame.get("replace")] == [[str(carol.pk)]]
    await alice_socket.disconnect()


@live
async def test_switching_read_receipts_replaces_what_my_page_has(alice, bob, carol, group):
    """Off: my page showing the room is told to forget every position. On: it is given them."""
    await apost(group, alice, "Hello")
    await sync_to_async(lambda: open_room(client_for(bob), group))()
    alice_socket = await connected(alice, group)
    await delivered(alice_socket)
    await sync_to_async(switch_receipts)(alice, False)
    assert json_frames(await delivered(alice_socket), "seen") == [
        {"type": "seen", "room": group.pk, "positions": {}, "replace": True}
    ]
    await sync_to_async(switch_receipts)(alice, True)
    (frame,) = json_frames(await delivered(alice_socket), "seen")
    assert frame["replace"] is True and set(frame["positions"]) == {str(bob.pk), str(carol.pk)}
    await alice_socket.disconnect()


@live
async def test_unblocking_gives_my_page_their_position_again(alice, bob, group):
    await sync_to_async(do_block)(alice, bob)
    alice_socket = await connected(alice, group)
    await delivered(alice_socket)
    await sync_to_async(do_unblock)(alice, bob)
    frames_after = await delivered(alice_socket)
    assert json_frames(frames_after, "blocked") == [{"type": "blocked", "users": []}]
    (frame,) = json_frames(frames_after, "seen")
    assert frame["replace"] is True and str(bob.pk) in frame["positions"]
    await alice_socket.disconnect()


@live
async def test_a_resume_gives_the_page_every_read_position_again(alice, bob, group, monkeypatch):
    """Reads that went by while the page was away are not replayed: a resume replaces them
    all, before caught_up (and not at all for a viewer who shares none)."""
    message = (await apost(group, alice, "Train or car?")).message
    await sync_to_async(lambda: services.do_mark_read(membership(group, bob), message.seq))()
    socket = await connected(alice, group)
    resume = {"type": "resume", "room": group.pk, "last_seq": message.seq, "oldest_seq": 1}
    await socket.send_to(text_data=json.dumps(resume))
    received = json_frames(await answered(socket))
    assert [frame["type"] for frame in received] == ["seen", "caught_up"]
    assert received[0]["replace"] is True and received[0]["positions"][str(bob.pk)] == message.seq
    await socket.disconnect()

    await sync_to_async(switch_receipts)(alice, False)
    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps(resume))
    assert [frame["type"] for frame in json_frames(await answered(socket))] == ["caught_up"]
    await socket.disconnect()
