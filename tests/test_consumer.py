"""The page's WebSocket: who may connect, what each viewer receives, and bad frames."""

import asyncio
import json
import re
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db.backends import utils as db_utils
from django.test import Client
from django.utils import timezone

from accounts.models import User
from calpico.asgi import application
from rooms import services
from rooms.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_RECONNECT,
    CLOSE_TOO_MANY_FRAMES,
    CLOSE_UNAUTHENTICATED,
)
from rooms.live_groups import room_group
from rooms.models import Membership, Message, Room
from tests.conftest import membership
from tests.sockets import (
    ORIGIN,
    answered,
    apost,
    closed_with,
    connect,
    connected,
    delivered,
    frames,
    html,
    json_frames,
    session_cookie,
)

pytestmark = pytest.mark.django_db(transaction=True)


# Who may connect


async def test_anonymous_sockets_are_closed_with_4401():
    socket = await connect(None)
    ok, _ = await socket.connect()
    assert ok  # accepted, then closed with our code so the page does not retry
    await closed_with(socket, CLOSE_UNAUTHENTICATED)


async def test_a_foreign_origin_is_refused(alice):
    socket = await connect(alice, origin=(b"origin", b"https://evil.example"))
    ok, _ = await socket.connect()
    assert not ok


async def test_a_room_the_user_is_not_in_closes_with_4404(mallory, group):
    socket = await connect(mallory, group)
    ok, _ = await socket.connect()
    assert ok
    await closed_with(socket, CLOSE_NOT_FOUND)


@pytest.mark.parametrize("room_param", ["abc", "999999", "-1"])
async def test_forged_room_ids_close_with_4404(alice, room_param):
    socket = WebsocketCommunicator(
        application,
        f"/ws/?room={room_param}",
        headers=[ORIGIN, (b"cookie", await sync_to_async(session_cookie)(alice))],
    )
    ok, _ = await socket.connect()
    assert ok
    await closed_with(socket, CLOSE_NOT_FOUND)


async def test_deactivated_accounts_cannot_connect(alice):
    cookie = await sync_to_async(session_cookie)(alice)
    alice.is_active = False
    await sync_to_async(alice.save)()
    socket = WebsocketCommunicator(application, "/ws/", headers=[ORIGIN, (b"cookie", cookie)])
    await socket.connect()
    await closed_with(socket, CLOSE_UNAUTHENTICATED)


# Opening a socket


def _counting_queries(monkeypatch):
    """Count every query, on any thread, from now on: returns the counter."""
    counts = {"n": 0}
    lock = threading.Lock()
    original = db_utils.CursorWrapper.execute

    def counting_execute(self, *args, **kwargs):
        with lock:
            counts["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
    return counts


async def test_opening_a_socket_is_one_trip_to_the_database_and_four_queries(alice, bob, monkeypatch):
    """Who it is, their rooms, their blocks, their notices: however many rooms they are in,
    and in one call on the sockets' database thread (the session comes from the cache)."""
    from rooms import socket_db

    rooms = [await sync_to_async(services.do_create_group)(alice, f"Room {i}", [bob]) for i in range(5)]
    cookie = await sync_to_async(session_cookie)(alice)
    trips = {"n": 0}
    original_handler = socket_db._KeptConnection.thread_handler

    def counting_handler(self, *args, **kwargs):
        trips["n"] += 1
        return original_handler(self, *args, **kwargs)

    monkeypatch.setattr(socket_db._KeptConnection, "thread_handler", counting_handler)
    queries = _counting_queries(monkeypatch)
    socket = WebsocketCommunicator(
        application, f"/ws/?room={rooms[0].pk}", headers=[ORIGIN, (b"cookie", cookie)]
    )
    socket.user = alice
    assert (await socket.connect())[0]
    assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    assert (trips["n"], queries["n"]) == (1, 4)
    await delivered(socket)  # it listens to every room
    await apost(rooms[4], bob, "heard")
    assert "heard" in html(await delivered(socket))
    await socket.disconnect()


async def test_a_session_the_cache_lost_is_read_from_the_database_once(alice, group, monkeypatch):
    """After a restart without Redis no session is in the cache: the socket reads it from
    the database (one query more) and puts it back, as the session engine does."""
    from django.contrib.sessions.backends.cached_db import KEY_PREFIX
    from django.core.cache import caches

    cookie = await sync_to_async(session_cookie)(alice)
    cache_key = KEY_PREFIX + cookie.decode().split("=", 1)[1]
    data = await sync_to_async(caches["sessions"].get)(cache_key)
    await sync_to_async(caches["sessions"].delete)(cache_key)
    queries = _counting_queries(monkeypatch)
    headers = [ORIGIN, (b"cookie", cookie)]
    socket = WebsocketCommunicator(application, f"/ws/?room={group.pk}", headers=headers)
    assert (await socket.connect())[0]
    assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    assert queries["n"] == 5
    assert await sync_to_async(caches["sessions"].get)(cache_key) == data
    await socket.disconnect()


async def test_the_handshake_completes_before_the_database_is_read(alice, group, monkeypatch):
    """After a deploy every page reconnects at once and opening work queues: the socket is
    accepted first, so no handshake waits for it (daphne refuses one that waits too long)."""
    from rooms import consumers

    release = threading.Event()
    real = consumers.read_opening

    def slow_read(*args):
        release.wait(5)
        return real(*args)

    monkeypatch.setattr(consumers, "read_opening", slow_read)
    socket = await connect(alice, group)
    ok, _ = await socket.connect(timeout=2)
    assert ok and not release.is_set()
    release.set()
    assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    await socket.disconnect()


@pytest.mark.parametrize("change", ["password", "deleted", "backend", "expired"])
async def test_a_session_that_no_longer_signs_in_closes_with_4401(alice, group, change):
    """The checks of Channels' AuthMiddleware: the password's hash still matches (else the
    session is flushed), the user still exists, their backend is still configured; and
    the session has not expired (read from the database, the cache having lost it)."""
    from django.contrib.sessions.backends.cached_db import KEY_PREFIX, SessionStore
    from django.contrib.sessions.models import Session
    from django.core.cache import caches

    cookie = await sync_to_async(session_cookie)(alice)
    key = cookie.decode().split("=", 1)[1]
    if change == "password":
        alice.set_password("something else entirely")
        await sync_to_async(alice.save)()
    elif change == "deleted":
        await sync_to_async(alice.delete)()
    elif change == "expired":

        def expire():
            Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
            caches["sessions"].delete(KEY_PREFIX + key)

        await sync_to_async(expire)()
    else:

        def move_to_another_backend():
            session = SessionStore(key)
            session["_auth_user_backend"] = "somewhere.else.Backend"
            session.save()

        await sync_to_async(move_to_another_backend)()
    socket = WebsocketCommunicator(
        application, f"/ws/?room={group.pk}", headers=[ORIGIN, (b"cookie", cookie)]
    )
    assert (await socket.connect())[0]
    await closed_with(socket, CLOSE_UNAUTHENTICATED)
    flushed = not await sync_to_async(Session.objects.filter(session_key=key).exists)()
    assert flushed == (change == "password")


async def test_notices_kept_while_away_show_on_the_next_page_once(alice, group, mallory):
    """Oldest first, ten at a time; a page refused (4404) takes none of them."""
    from rooms.services.moderation import do_notify

    for i in range(12):
        await sync_to_async(do_notify)(alice.pk, f"notice {i:02d}")
    refused = await connect(alice, await sync_to_async(services.do_create_group)(mallory, "Not hers", []))
    assert (await refused.connect())[0]
    await closed_with(refused, CLOSE_NOT_FOUND)

    async def notices_on_opening() -> list[str]:
        socket = await connected(alice, group)
        shown = re.findall(r"notice (\d\d)", html(await delivered(socket)))
        await socket.disconnect()
        return shown

    assert await notices_on_opening() == [f"{i:02d}" for i in range(10)]
    assert await notices_on_opening() == ["10", "11"]
    assert await notices_on_opening() == []


async def test_notices_stay_unseen_when_the_opening_socket_fails_before_sending_them(
    alice, group, monkeypatch
):
    """Marked seen only once sent: a socket that could not send them leaves them to the next."""
    from rooms.consumers import RoomConsumer
    from rooms.models import Notice
    from rooms.services.moderation import do_notify

    await sync_to_async(do_notify)(alice.pk, "kept for later")
    original = RoomConsumer.send

    async def gone_before_the_notice(self, text_data=None, bytes_data=None, close=False):
        if text_data and "toast--notice" in text_data:
            raise ConnectionError("the socket went away")
        await original(self, text_data=text_data, bytes_data=bytes_data, close=close)

    monkeypatch.setattr(RoomConsumer, "send", gone_before_the_notice)
    failing = await connect(alice, group)
    assert (await failing.connect())[0]
    assert json.loads(await failing.receive_from(timeout=5))["type"] == "hello"
    with pytest.raises(ConnectionError):
        await failing.receive_output(timeout=5)
    unseen = Notice.objects.filter(user=alice, seen_at__isnull=True)
    assert await sync_to_async(unseen.count)() == 1

    monkeypatch.setattr(RoomConsumer, "send", original)
    socket = await connected(alice, group)
    assert "kept for later" in html(await delivered(socket))
    await socket.disconnect()
    assert await sync_to_async(unseen.count)() == 0


async def test_a_notice_kept_while_away_shows_on_one_of_two_pages_opening_at_once(alice, group, monkeypatch):
    """Two pages of the same person open together (a browser restoring its tabs): both
    read the notice before either sent it, and it is shown once, not on both."""
    from rooms.consumers import RoomConsumer
    from rooms.services.moderation import do_notify

    await sync_to_async(do_notify)(alice.pk, "shown once")
    both_read, hellos = asyncio.Event(), []
    original = RoomConsumer._send_json

    async def hello_once_both_read(self, data):
        if data.get("type") == "hello":
            hellos.append(self)
            if len(hellos) == 2:
                both_read.set()
            await asyncio.wait_for(both_read.wait(), 5)
        await original(self, data)

    monkeypatch.setattr(RoomConsumer, "_send_json", hello_once_both_read)
    pages = [await connect(alice, group), await connect(alice, group)]
    try:
        for ok, _ in await asyncio.gather(*(page.connect() for page in pages)):
            assert ok
        shown = [html(await frames(page)).count("shown once") for page in pages]
        assert sorted(shown) == [0, 1], shown
    finally:
        for page in pages:
            await page.disconnect()


async def test_a_live_notice_marks_only_itself_seen_not_one_an_opening_page_is_about_to_show(
    alice, group, monkeypatch
):
    """A page opening read a notice kept while away; before it shows it, a new notice
    reaches the person's open page live. That page marks the one it showed, not every
    unseen notice: the opening page still shows the first."""
    from rooms.consumers import RoomConsumer
    from rooms.models import Notice
    from rooms.services.moderation import do_notify

    open_page = await connected(alice, group)
    # Kept while away (no page of theirs was open when it was made).
    await sync_to_async(Notice.objects.create)(user=alice, text="kept while away")
    read, resume = asyncio.Event(), asyncio.Event()
    original = RoomConsumer._send_json

    async def pause_after_reading(self, data):
        if data.get("type") == "hello" and not read.is_set():
            read.set()
            await asyncio.wait_for(resume.wait(), 5)
        await original(self, data)

    monkeypatch.setattr(RoomConsumer, "_send_json", pause_after_reading)
    opening = await connect(alice, group)
    try:
        assert (await opening.connect())[0]
        await asyncio.wait_for(read.wait(), 5)
        await sync_to_async(do_notify)(alice.pk, "made just now")
        assert "made just now" in html(await delivered(open_page))
        resume.set()
        assert "kept while away" in html(await frames(opening))
    finally:
        resume.set()
        await opening.disconnect()
        await open_page.disconnect()


def test_opening_reads_accepted_rooms_that_are_not_archived_and_each_persons_own(alice, bob, carol, mallory):
    """The opening's queries are compiled once and run with each person's id: each gets
    their own rooms (no archived room, no message request, pending or declined), blocks (made
    and received) and notices."""
    from accounts.services import do_block
    from rooms.opening import read_opening
    from rooms.services.moderation import do_notify

    kept = services.do_create_group(alice, "Kept", [bob])
    archived = services.do_create_group(alice, "Archived", [bob])
    Room.objects.filter(pk=archived.pk).update(archived_at=timezone.now())
    asked = services.do_open_direct_room(mallory, alice)  # a stranger: a pending request for alice
    declined = services.do_open_direct_room(carol, alice)
    Membership.objects.filter(room=declined, user=alice).update(request=Membership.Request.DECLINED)
    Membership.objects.filter(room=kept, user=bob).update(last_read_seq=3, muted=True)
    do_block(alice, mallory)
    do_block(bob, carol)
    do_notify(bob.pk, "for bob")

    def opening(user, room=None):
        return read_opening(session_cookie(user).decode().split("=", 1)[1], room)

    mine, bobs = opening(alice), opening(bob)
    assert set(mine.rooms) == {kept.pk} and mine.blocked == {mallory.pk} and mine.notices == []
    assert set(bobs.rooms) == {kept.pk} and bobs.blocked == {carol.pk} and bobs.notices == ["for bob"]
    assert (bobs.rooms[kept.pk].last_read_seq, bobs.rooms[kept.pk].muted) == (3, True)
    assert mine.blocked_by == bobs.blocked_by == set()
    assert opening(mallory).blocked_by == {alice.pk} and opening(carol).blocked_by == {bob.pk}
    assert mine.rooms[kept.pk].muted is False
    # A pending request's page may open (it hears nothing from that room); a declined one not.
    assert opening(alice, asked.pk).allowed and asked.pk not in opening(alice, asked.pk).rooms
    assert not opening(alice, declined.pk).allowed
    assert not opening(alice, archived.pk).allowed
    assert not opening(carol, kept.pk).allowed
    assert read_opening(None, kept.pk).user is None and read_opening("not-a-session", None).user is None


# What each viewer receives


async def test_a_message_reaches_members_viewing_the_room_rendered_once(alice, bob, carol, group):
    alice_socket = await connected(alice, group)
    bob_socket = await connected(bob, group)
    await delivered(alice_socket)
    await delivered(bob_socket)

    message = (await apost(group, bob, "Lunch at **noon**?")).message

    to_alice = await delivered(alice_socket)
    assert f'id="m-{message.pk}"' in html(to_alice)
    assert "<strong>noon</strong>" in html(to_alice)
    assert 'hx-swap-oob="beforeend:#messages"' in html(to_alice)
    assert "Bob Builder: Lunch at noon?" in html(to_alice)  # the sidebar preview
    # One frame per delivery: the page showing the room counts unread messages itself.
    assert len(to_alice) == 1
    assert json_frames(to_alice, "unread") == []
    to_bob = await delivered(bob_socket)
    assert f'id="m-{message.pk}"' in html(to_bob)
    assert "You: Lunch at noon?" in html(to_bob)
    assert json_frames(to_bob, "unread") == []  # my own message is read
    assert "toast" not in html(to_bob)
    for socket in (alice_socket, bob_socket):
        await socket.disconnect()


async def test_members_elsewhere_get_the_sidebar_and_a_toast_but_not_the_message(alice, bob, group, direct):
    socket = await connected(alice, direct)
    await delivered(socket)
    await apost(group, bob, "over here")
    received = await delivered(socket)
    assert 'id="m-' not in html(received)
    assert f'id="sidebar-preview-{group.pk}"' in html(received)
    assert 'class="toast"' in html(received) and "over here" in html(received)
    assert json_frames(received, "unread")[0]["count"] == 1
    await socket.disconnect()


async def test_non_members_receive_nothing(alice, bob, mallory, group):
    socket = await connected(mallory)
    await delivered(socket)
    await apost(group, bob, "members only")
    assert await delivered(socket) == []
    await socket.disconnect()


async def test_a_muted_room_counts_but_does_not_notify_except_mentions(alice, bob, group):
    await sync_to_async(services.do_set_muted)(await sync_to_async(membership)(group, alice), True)
    socket = await connected(alice)
    await delivered(socket)

    await apost(group, bob, "quiet please")
    received = await delivered(socket)
    assert "toast" not in html(received)
    assert json_frames(received, "unread") == [
        {"type": "unread", "room": group.pk, "count": 1, "muted": True}
    ]

    await apost(group, bob, "@alice you need to see this")
    received = await delivered(socket)
    assert "toast--mention" in html(received) and "mentioned you" in html(received)
    await socket.disconnect()


async def test_muting_while_connected_takes_effect_at_once(alice, bob, group):
    socket = await connected(alice)
    await delivered(socket)
    await sync_to_async(services.do_set_muted)(await sync_to_async(membership)(group, alice), True)
    await delivered(socket)
    await apost(group, bob, "shh")
    assert "toast" not in html(await delivered(socket))
    await socket.disconnect()


@pytest.mark.django_db
def test_system_messages_are_announced_without_toasts(alice, group, events):
    """A system message goes to the room's pages like any message, with no toast to show."""
    with events() as sent:
        services.do_rename_room(alice, group, "Lisbon")
    (event,) = [e for e in sent.to(room_group(group.pk)) if e["type"] == "room.message"]
    assert event["system"] and "renamed the group to “Lisbon”" in event["message_html"]
    assert event["toast_html"] == event["toast_html_mention"] == ""
    assert "toast" not in event["message_html"] + event["sidebar_html"]


@pytest.mark.django_db
def test_edits_and_deletes_replace_the_message_in_place(bob, group, events):
    """An edit, then a delete, each send the message's new HTML to swap in where it is."""
    message = services.do_post_message(membership(group, bob), "typo").message
    with events() as sent:
        services.do_edit_message(bob, message, "fixed")
    (changed,) = sent.to(room_group(group.pk))
    assert changed["type"] == "room.message_changed" and changed["message_id"] == message.pk
    assert f'id="m-{message.pk}"' in changed["html"] and 'hx-swap-oob="true"' in changed["html"]
    assert "fixed" in changed["html"] and "edited" in changed["html"]
    with events() as sent:
        services.do_delete_message(bob, message)
    (changed,) = sent.to(room_group(group.pk))
    assert "message deleted" in changed["html"] and "fixed" not in changed["html"]


async def test_delivery_costs_no_database_query_per_recipient(alice, bob, carol, group, monkeypatch):
    """Posting to a room with three open sockets runs as many queries as with one."""
    counts = {"n": 0}
    lock = threading.Lock()
    original = db_utils.CursorWrapper.execute

    def counting_execute(self, *args, **kwargs):
        with lock:
            counts["n"] += 1
        return original(self, *args, **kwargs)

    async def queries_for_one_post(users):
        sockets = [await connected(u, group) for u in users]
        for s in sockets:
            await delivered(s)
        monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
        counts["n"] = 0
        await apost(group, bob, "count me")
        for s in sockets:
            assert "count me" in html(await delivered(s))
        monkeypatch.setattr(db_utils.CursorWrapper, "execute", original)
        for s in sockets:
            await s.disconnect()
        return counts["n"]

    # Bob reads the room to its end first, so both posts find him so: a post past messages
    # the author had not read asks one query more, for read receipts (the same for any number
    # of recipients).
    await apost(group, bob, "caught up")
    assert await queries_for_one_post([alice]) == await queries_for_one_post([alice, bob, carol])


# Removal, logout, deactivation


async def test_removing_a_member_closes_their_socket_for_that_room(alice, bob, group):
    socket = await connected(bob, group)
    await delivered(socket)
    await sync_to_async(services.do_remove_member)(alice, group, bob)
    await closed_with(socket, CLOSE_FORBIDDEN)


async def test_a_removed_member_elsewhere_loses_the_room_and_its_messages(alice, bob, group):
    socket = await connected(bob)
    await delivered(socket)
    await sync_to_async(services.do_remove_member)(alice, group, bob)
    assert {"type": "room_removed", "room": group.pk} in json_frames(await delivered(socket))
    await apost(group, alice, "after you left")
    assert await delivered(socket) == []
    await socket.disconnect()


async def test_someone_added_to_a_group_gets_it_live(alice, bob, group, mallory):
    socket = await connected(mallory)
    await delivered(socket)
    await sync_to_async(services.do_add_members)(alice, group, [mallory])
    received = html(await delivered(socket))
    assert f'id="sidebar-entry-{group.pk}"' in received
    assert "You were added to Trip planning" in received
    await apost(group, bob, "welcome mallory")
    assert "welcome mallory" in html(await delivered(socket))
    await socket.disconnect()


async def test_logging_out_closes_every_socket_of_the_user(alice, group):
    """With 4012: these sockets' sessions are still signed in and come back
    (tests/test_security.py follows them)."""
    sockets = [await connected(alice, group), await connected(alice)]
    client = Client()
    await sync_to_async(client.force_login)(alice)
    await sync_to_async(client.post)("/accounts/logout/")
    for socket in sockets:
        await closed_with(socket, CLOSE_RECONNECT)


async def test_deactivating_an_account_closes_its_sockets(alice):
    socket = await connected(alice)
    alice.is_active = False
    await sync_to_async(alice.save)()
    await closed_with(socket, CLOSE_UNAUTHENTICATED)


# Catch-up


async def test_resume_sends_what_was_missed_in_order(alice, bob, group):
    start = (await sync_to_async(lambda: group.__class__.objects.get(pk=group.pk).last_seq)()) or 0
    for text in ("one", "two", "three"):
        await apost(group, bob, text)
    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps({"type": "resume", "room": group.pk, "last_seq": start}))
    received = await answered(socket)
    body = html(received)
    assert body.index(">one<") < body.index(">two<") < body.index(">three<")
    caught_up = json_frames(received, "caught_up")[0]
    assert caught_up["last_seq"] == start + 3
    await socket.disconnect()


async def test_resume_also_replaces_messages_changed_while_away(alice, bob, group):
    message = (await apost(group, bob, "original")).message
    socket = await connected(alice, group)
    hello_time = await sync_to_async(lambda: message.created_at.isoformat())()
    await sync_to_async(services.do_edit_message)(bob, message, "changed while away")
    await delivered(socket)
    await socket.send_to(
        text_data=json.dumps(
            {
                "type": "resume",
                "room": group.pk,
                "last_seq": message.seq,
                "oldest_seq": 1,
                "since": hello_time,
            }
        )
    )
    body = html(await answered(socket))
    assert "changed while away" in body and 'hx-swap-oob="true"' in body
    await socket.disconnect()


async def test_a_page_showing_an_older_window_gets_its_changes_not_what_came_after(
    alice, bob, group, settings
):
    """A link to a message shows the room around it; resuming there (`detached`) must not
    pour the rest of the room into it, nor make it reload for being far behind."""
    settings.WS_CATCH_UP_LIMIT = 2
    messages = [(await apost(group, bob, f"window {n}")).message for n in range(6)]
    socket = await connected(alice, group)
    since = await sync_to_async(timezone.now)()
    await sync_to_async(services.do_edit_message)(bob, messages[1], "edited in the window")
    await delivered(socket)
    resume = {
        "type": "resume",
        "room": group.pk,
        "last_seq": messages[2].seq,
        "oldest_seq": messages[0].seq,
        "since": since.isoformat(),
        "detached": True,
    }
    await socket.send_to(text_data=json.dumps(resume))
    received = await answered(socket)
    body = html(received)
    assert "edited in the window" in body and body.count("<article") == 1
    assert json_frames(received, "caught_up")[0]["last_seq"] == messages[2].seq
    await socket.disconnect()


async def test_a_client_too_far_behind_is_told_to_reload(alice, bob, group, settings):
    settings.WS_CATCH_UP_LIMIT = 2
    for text in ("a", "b", "c"):
        await apost(group, bob, text)
    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps({"type": "resume", "room": group.pk, "last_seq": 0}))
    assert json_frames(await answered(socket)) == [{"type": "reload", "reason": "too_far_behind"}]
    await socket.disconnect()


async def test_catch_up_of_changed_messages_is_bounded_too(alice, bob, group, settings, monkeypatch):
    """A page may name any `since` and `oldest_seq`: with more changed messages than the
    limit, it is told to reload instead of being sent every one of them."""
    settings.WS_CATCH_UP_LIMIT = 5
    start = await sync_to_async(lambda: timezone.now() - timedelta(days=365))()
    messages = [(await apost(group, bob, f"note {n}")).message for n in range(12)]
    for message in messages:
        await sync_to_async(services.do_edit_message)(bob, message, f"{message.body} edited")
    socket = await connected(alice, group)
    await delivered(socket)
    queries = count_queries(monkeypatch)
    resume = {"type": "resume", "room": group.pk, "last_seq": messages[-1].seq, "oldest_seq": 1}
    await socket.send_to(text_data=json.dumps({**resume, "since": start.isoformat()}))
    received = await answered(socket)
    assert json_frames(received) == [{"type": "reload", "reason": "too_far_behind"}]
    assert html(received).count("<article") == 0
    assert queries["n"] <= 3
    # Within the limit, missed and changed messages together, everything arrives.
    since = await sync_to_async(timezone.now)()
    await sync_to_async(services.do_edit_message)(bob, messages[3], "changed once more")
    await delivered(socket)  # the edit, live
    queries["n"] = 0
    await socket.send_to(
        text_data=json.dumps({**resume, "last_seq": messages[7].seq, "since": since.isoformat()})
    )
    received = await answered(socket)
    assert json_frames(received, "caught_up")[0]["last_seq"] == messages[-1].seq
    body = html(received)
    assert "changed once more" in body and body.count("<article") == 5  # 4 missed, 1 changed
    assert queries["n"] <= 4  # and the one quick look whether anything changed at all
    await socket.disconnect()


def count_queries(monkeypatch) -> dict:
    """From now on, counts["n"] is the number of database queries run (in any thread)."""
    counts = {"n": 0}
    lock = threading.Lock()
    original = db_utils.CursorWrapper.execute

    def counting_execute(self, *args, **kwargs):
        with lock:
            counts["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
    return counts


# Typing, presence, reads


async def test_typing_reaches_the_others_in_the_room_and_is_throttled(alice, bob, group):
    alice_socket = await connected(alice, group)
    bob_socket = await connected(bob, group)
    for _ in range(3):
        await bob_socket.send_to(text_data=json.dumps({"type": "typing", "room": group.pk}))
    await answered(bob_socket)  # bob's socket has handled the three
    typing = json_frames(await delivered(alice_socket), "typing")
    assert typing == [
        {"type": "typing", "room": group.pk, "user": bob.pk, "name": "Bob Builder", "seconds": 5}
    ]
    assert json_frames(await delivered(bob_socket), "typing") == []
    for socket in (alice_socket, bob_socket):
        await socket.disconnect()


async def presence_frames(socket, within: float = 10.0) -> list[dict]:
    """The presence frames a socket receives: waits up to `within` seconds for the first, then
    takes everything until the socket has been quiet for two batch intervals."""
    received: list[str] = []
    deadline = asyncio.get_running_loop().time() + within
    while not json_frames(received, "presence") and asyncio.get_running_loop().time() < deadline:
        received.extend(await frames(socket, timeout=0.1))
    received.extend(await frames(socket, timeout=2 * settings.PRESENCE_BATCH_SECONDS))
    return json_frames(received, "presence")


async def test_presence_goes_online_and_offline_in_batches(alice, bob, carol, group, settings):
    settings.PRESENCE_BATCH_SECONDS = 0.5
    alice_socket = await connected(alice, group)
    bob_socket, carol_socket = await connect(bob), await connect(carol)
    await asyncio.gather(bob_socket.connect(), carol_socket.connect())
    # Two arrivals within the batch interval: one frame for both. The frame may take a while
    # on a loaded machine (it goes through the channel layer): wait for it, then for quiet.
    arrivals = await presence_frames(alice_socket)
    assert len(arrivals) == 1
    assert sorted(arrivals[0]["online"]) == sorted([bob.pk, carol.pk]) and arrivals[0]["offline"] == []
    await bob_socket.disconnect()
    assert await presence_frames(alice_socket) == [{"type": "presence", "online": [], "offline": [bob.pk]}]
    await carol_socket.disconnect()
    await alice_socket.disconnect()


async def test_read_frames_move_the_read_position(alice, bob, group, monkeypatch):
    monkeypatch.setattr("rooms.consumers.READ_FLUSH_SECONDS", 0.05)
    message = (await apost(group, bob, "read me")).message
    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps({"type": "read", "room": group.pk, "seq": message.seq}))
    assert json_frames(await frames(socket)) == []  # acknowledged by nothing: the page already knows
    position = await sync_to_async(lambda: Membership.objects.get(room=group, user=alice).last_read_seq)()
    assert position == message.seq
    await socket.disconnect()


# Bad frames


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "objects with a"),
        ('{"kind": "typing"}', "objects with a"),
        ('{"type": "launch"}', "Unknown frame type"),
        ('{"type": "typing", "room": "1"}', "typing needs a room you are in"),
        ('{"type": "typing", "room": 999999}', "typing needs a room you are in"),
        ('{"type": "read", "room": true, "seq": 1}', "read needs a room"),
        ('{"type": "read", "room": ROOM, "seq": -4}', "read needs a room"),
        ('{"type": "resume", "room": ROOM}', "resume needs"),
        ('{"type": "resume", "room": ROOM, "last_seq": "0"}', "resume needs"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(alice, group, frame, error):
    socket = await connected(alice, group)
    await socket.send_to(text_data=frame.replace("ROOM", str(group.pk)))
    errors = json_frames(await answered(socket), "error")
    assert len(errors) == 1 and error in errors[0]["message"]
    assert await answered(socket) == []  # still open: a ping gets its pong, and nothing else
    await socket.disconnect()


async def test_oversized_and_binary_frames_are_refused(alice, group):
    socket = await connected(alice, group)
    await socket.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * settings.WS_MAX_FRAME_BYTES}))
    assert "at most 16 KB" in json_frames(await answered(socket), "error")[0]["message"]
    await socket.send_to(bytes_data=b"\x00\x01")
    assert "JSON text" in json_frames(await answered(socket), "error")[0]["message"]
    await socket.disconnect()


async def test_a_flood_of_frames_is_cut_off(alice, group, settings):
    settings.WS_FRAMES_PER_10_SECONDS = 5
    socket = await connected(alice, group)
    for _ in range(6):
        await socket.send_to(text_data='{"type": "ping"}')
    # Each frame gets one answer: five pongs, then the error.
    received = [json.loads(await socket.receive_from(timeout=5)) for _ in range(6)]
    assert {"type": "error", "message": "Too many frames; slow down."} in received
    for _ in range(6):
        await socket.send_to(text_data='{"type": "ping"}')
    await closed_with(socket, CLOSE_TOO_MANY_FRAMES)


# A resume's range


async def test_a_resume_over_more_messages_than_a_page_holds_is_told_to_reload_unread(
    alice, bob, group, settings, monkeypatch
):
    """`oldest_seq` is the page's to choose: a range longer than a page can hold gets a reload
    before any message is read, so no resume makes the server scan a whole room."""
    settings.WS_RESUME_MAX_RANGE = 10
    start = await sync_to_async(lambda: timezone.now() - timedelta(days=365))()
    messages = [(await apost(group, bob, f"note {n}")).message for n in range(12)]
    socket = await connected(alice, group)
    await delivered(socket)
    statements: list[str] = []
    original = db_utils.CursorWrapper.execute

    def recording_execute(self, sql, *args, **kwargs):
        statements.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", recording_execute)
    last_seq = messages[-1].seq
    resume = {"type": "resume", "room": group.pk, "last_seq": last_seq, "since": start.isoformat()}
    await socket.send_to(text_data=json.dumps({**resume, "oldest_seq": last_seq - 11}))
    received = await answered(socket)
    assert json_frames(received) == [{"type": "reload", "reason": "too_long"}]
    assert not [sql for sql in statements if "rooms_message" in sql]
    # A range a page can hold is answered as before.
    await socket.send_to(text_data=json.dumps({**resume, "oldest_seq": last_seq - 10}))
    received = await answered(socket)
    assert json_frames(received, "caught_up")[0]["last_seq"] == last_seq
    await socket.disconnect()


def test_a_resume_with_nothing_to_send_is_told_so_by_one_query_as_catch_up_would(alice, bob, group, direct):
    """The quick look a resume takes first (rooms.opening.nothing_to_catch_up) agrees with
    catch_up: nothing after last_seq (unless the page is detached), nothing on the page
    changed since `since`."""
    from rooms.opening import nothing_to_catch_up
    from rooms.queries import ASSISTANT_REPLY_WINDOW, catch_up

    since = timezone.now()
    assert nothing_to_catch_up(direct.pk, 0, 0, since) and catch_up(direct.pk, 0, 0, since) == ([], [], 0)
    seqs = [services.do_post_message(membership(group, bob), f"m{i}").message.seq for i in range(6)]
    first, last = seqs[1], seqs[4]  # the page shows these; seqs[5] came later, seqs[0] before
    messages = Message.objects.filter(room=group)

    def agree(last_seq=last, oldest=first, since=since, detached=False) -> bool:
        quick = nothing_to_catch_up(group.pk, last_seq, oldest, since, detached=detached)
        missed, changed, newest = catch_up(group.pk, last_seq, oldest or last_seq, since, detached=detached)
        assert quick == (missed == [] and changed == [] and newest == last_seq)
        return quick

    assert not agree()  # seqs[5] was missed
    assert agree(detached=True)  # ...but a page showing an older window does not take it
    assert not agree(last_seq=0, oldest=0)  # a page from before the first message
    assert agree(last_seq=seqs[5], oldest=first)
    assert agree(last_seq=seqs[5], oldest=first, since=None)
    long_ago = since - ASSISTANT_REPLY_WINDOW - timedelta(minutes=1)
    for change, nothing in [
        ({"edited_at": since - timedelta(seconds=1)}, True),
        ({"edited_at": since}, False),
        ({"deleted_at": since + timedelta(seconds=5)}, False),
        ({"reactions_changed_at": since}, False),
        ({"kind": Message.Kind.ASSISTANT, "created_at": long_ago}, True),
        ({"kind": Message.Kind.ASSISTANT, "created_at": since - timedelta(minutes=5)}, False),
    ]:
        messages.filter(seq=seqs[2]).update(**change)
        assert agree(last_seq=seqs[5]) is nothing, change
        unchanged = {"edited_at": None, "deleted_at": None, "reactions_changed_at": None}
        messages.filter(seq=seqs[2]).update(**unchanged, kind=Message.Kind.TEXT, created_at=long_ago)
    messages.filter(seq=seqs[0]).update(edited_at=since)  # before the page's oldest
    assert agree(last_seq=seqs[5])
    assert not nothing_to_catch_up(group.pk, seqs[1], seqs[3], since)  # oldest after last: catch_up decides


def test_a_quick_resume_reads_the_positions_room_read_positions_would(alice, bob, carol, group):
    from rooms.opening import quick_resume
    from rooms.queries import room_read_positions

    Membership.objects.filter(room=group, user=bob).update(last_read_seq=4)
    Membership.objects.filter(room=group, user=carol).update(last_read_seq=2)
    User.objects.filter(pk=carol.pk).update(read_receipts=False)
    last = Room.objects.get(pk=group.pk).last_seq
    for reader, hidden in [(alice, set()), (alice, {bob.pk}), (bob, set())]:
        quick = quick_resume(group.pk, last, 1, None, False, reader.pk, hidden)
        assert quick.nothing and quick.positions == room_read_positions(group.pk, reader.pk, hidden)
    assert quick_resume(group.pk, last, 1, None, False, None, set()).positions is None
    assert not quick_resume(group.pk, last - 1, 1, None, False, alice.pk, set()).nothing


@pytest.mark.parametrize("receipts", [True, False])
async def test_an_up_to_date_page_resumes_with_one_query_and_one_for_read_positions(
    alice, bob, carol, group, monkeypatch, receipts
):
    await apost(group, bob, "seen already")
    last = await sync_to_async(lambda: Room.objects.get(pk=group.pk).last_seq)()
    await sync_to_async(User.objects.filter(pk=alice.pk).update)(read_receipts=receipts)
    socket = await connected(alice, group)
    queries = _counting_queries(monkeypatch)
    frame = {
        "type": "resume",
        "room": group.pk,
        "last_seq": last,
        "oldest_seq": 1,
        "since": timezone.now().isoformat(),
    }
    await socket.send_to(text_data=json.dumps(frame))
    received = json_frames(await answered(socket))
    assert [f["type"] for f in received] == (["seen", "caught_up"] if receipts else ["caught_up"])
    assert received[-1]["last_seq"] == last
    if receipts:
        assert received[0]["positions"] == {str(bob.pk): last, str(carol.pk): 0} and received[0]["replace"]
    assert queries["n"] == (2 if receipts else 1)
    await socket.disconnect()
