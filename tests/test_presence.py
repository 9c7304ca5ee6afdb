"""Presence keys: kept fresh by one timer per process, not one per socket."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from calpico import metrics
from notifications import rules
from rooms import presence, services
from rooms.consumers import RoomConsumer
from tests.conftest import membership
from tests.sockets import answered, connect, connected, frames, json_frames

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_sockets_of_other_tests(monkeypatch):
    """Sockets another test left open stay counted in this process: start from none."""
    monkeypatch.setattr(presence, "_local", {})


def test_refresh_many_adds_the_missing_keys_and_keeps_the_others(alice, bob, carol, settings):
    """One call for everyone (one pipeline on Redis): who was not online comes back."""
    presence.refresh(alice.pk)
    presence.refresh(bob.pk)
    presence.forget(bob.pk)
    assert presence.refresh_many([alice.pk, bob.pk, carol.pk]) == [bob.pk, carol.pk]
    assert presence.online_user_ids([alice.pk, bob.pk, carol.pk]) == {alice.pk, bob.pk, carol.pk}
    assert presence.refresh_many([alice.pk, bob.pk, carol.pk]) == []
    assert presence.refresh_many([]) == []


def _refreshers() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_refresh_local"]  # type: ignore[union-attr]


async def test_one_timer_keeps_every_socket_of_the_process_online(alice, bob, carol, group, settings):
    """Keys outlive PRESENCE_SECONDS while their sockets are open, with one task for all."""
    settings.PRESENCE_SECONDS = 1
    sockets = [await connected(user, group) for user in (alice, bob, carol)]
    assert len(_refreshers()) == 1
    await asyncio.sleep(2.2)
    online = await sync_to_async(presence.online_user_ids)([alice.pk, bob.pk, carol.pk])
    assert online == {alice.pk, bob.pk, carol.pk}
    for socket in sockets:
        await socket.disconnect()
    assert await sync_to_async(presence.online_user_ids)([alice.pk, bob.pk, carol.pk]) == set()


async def test_someone_another_process_forgot_is_announced_again(alice, bob, group, settings):
    """With several processes, the last socket of a user closing on one deletes their key
    while another process still holds one: that process's next refresh puts it back and
    says so in the user's rooms."""
    settings.PRESENCE_SECONDS = 1
    settings.PRESENCE_BATCH_SECONDS = 0.1
    watching = await connected(alice, group)
    bobs = await connected(bob)
    await frames(watching, timeout=0.3)  # bob's arrival
    await sync_to_async(presence.forget)(bob.pk)
    arrivals = json_frames(await frames(watching, timeout=0.8), "presence")
    assert {"type": "presence", "online": [bob.pk], "offline": []} in arrivals
    await bobs.disconnect()
    await watching.disconnect()


async def test_the_timer_stops_with_the_last_socket_and_starts_with_the_next(alice, group, settings):
    settings.PRESENCE_SECONDS = 0.4
    socket = await connected(alice, group)
    await socket.disconnect()
    await asyncio.sleep(0.5)
    assert _refreshers() == []
    socket = await connect(alice, group)
    assert (await socket.connect())[0]
    assert json.loads(await socket.receive_from(timeout=5))["type"] == "hello"
    assert len(_refreshers()) == 1
    await socket.disconnect()


# A socket that closes badly: this process stops counting it all the same.


def _open_gauge() -> float:
    return metrics.WEBSOCKETS_OPEN._value.get()


@pytest.fixture
def _no_pages_here(monkeypatch):
    monkeypatch.setattr(presence, "_viewing_here", {})


def _bob_is_notified(group, alice, bob) -> bool:
    message = services.do_post_message(membership(group, alice), "are you there?").message
    return bob.pk in {note.user_id for note in rules.for_message(message, alice.pk)}


async def _viewing_socket(bob, group):
    socket = await connected(bob, group)
    await socket.send_to(text_data=json.dumps({"type": "viewing", "visible": True}))
    await answered(socket)
    assert presence._local.keys() == {bob.pk}
    assert presence._viewing_here.keys() == {bob.pk}
    return socket


async def _assert_forgotten_here(alice, bob, group, before: float, monkeypatch) -> None:
    """Nothing of bob's socket is left in this process: no presence to refresh, no page to
    stamp, the gauge back; and once the stamp is old, pushes reach him again."""
    assert bob.pk not in presence._local
    assert bob.pk not in presence._viewing_here
    assert _open_gauge() == before
    await sync_to_async(presence.refresh_viewing)()  # the timer's next turn
    later = presence._now() + presence.settings.PRESENCE_SECONDS + 1
    monkeypatch.setattr(presence, "_now", lambda: later)
    assert await sync_to_async(presence.viewing)([bob.pk]) == {}
    assert await sync_to_async(_bob_is_notified)(group, alice, bob)


async def test_a_disconnect_cancelled_while_it_waits_leaves_nobody_online_here(
    alice, bob, group, monkeypatch, _no_pages_here
):
    """daphne cancels a consumer whose disconnect takes too long (application close
    timeout, its own shutdown): the person's presence and page are forgotten anyway."""
    before = _open_gauge()
    socket = await _viewing_socket(bob, group)
    stuck = asyncio.Event()

    async def never(*args):
        await stuck.wait()

    monkeypatch.setattr(RoomConsumer, "_flush_reads", never)
    monkeypatch.setattr(RoomConsumer, "pending_reads", {group.pk: 1})
    await socket.disconnect(timeout=0.5)  # then cancels the application, as daphne does
    assert socket.future.cancelled()
    await _assert_forgotten_here(alice, bob, group, before, monkeypatch)


async def test_a_disconnect_whose_cache_fails_still_forgets_the_socket_here(
    alice, bob, group, monkeypatch, _no_pages_here
):
    before = _open_gauge()
    socket = await _viewing_socket(bob, group)

    def down(*args):
        raise ConnectionError("cache down")

    monkeypatch.setattr(presence, "set_viewing", down)
    monkeypatch.setattr(presence, "forget", down)
    await socket.disconnect()
    await _assert_forgotten_here(alice, bob, group, before, monkeypatch)


async def test_a_handler_that_raises_forgets_the_socket_without_disconnect(
    alice, bob, group, monkeypatch, _no_pages_here
):
    before = _open_gauge()
    socket = await _viewing_socket(bob, group)

    async def broken(self, frame):
        raise RuntimeError("bug")

    monkeypatch.setattr(RoomConsumer, "_on_ping", broken)
    await socket.send_to(text_data=json.dumps({"type": "ping"}))
    with pytest.raises(RuntimeError):
        await socket.receive_from(timeout=5)
    await _assert_forgotten_here(alice, bob, group, before, monkeypatch)


# Pages in front of someone: each process stamps only its own.


def test_another_process_page_is_ignored_once_its_stamp_is_old(alice, bob, group, monkeypatch, settings):
    """A process that died left bob's page "viewing" the group in the shared key; this
    process keeps refreshing its own page of bob's, which must not keep the dead one."""
    settings.PRESENCE_SECONDS = 30
    clock = [1000.0]
    monkeypatch.setattr(presence, "_now", lambda: clock[0])
    monkeypatch.setattr(presence, "_viewing_here", {})
    presence.set_viewing(bob.pk, "dead-process-page", group.pk)
    presence.page_gone_here(bob.pk, "dead-process-page")  # it was never this process's
    presence.set_viewing(bob.pk, "page-here", 0)
    assert presence.viewing([bob.pk]) == {bob.pk: {group.pk, 0}}
    assert not _bob_is_notified(group, alice, bob)
    for _ in range(3):  # the timer, every PRESENCE_SECONDS / 2
        clock[0] += 15
        presence.refresh_viewing()
    assert presence.viewing([bob.pk]) == {bob.pk: {0}}
    assert _bob_is_notified(group, alice, bob)
    # The page here, no longer stamped either, ages out too.
    presence.page_gone_here(bob.pk, "page-here")
    clock[0] += 31
    assert presence.viewing([bob.pk]) == {}


def test_an_entry_of_the_old_shape_is_not_a_page_in_front(bob, group):
    presence.cache.set(presence._viewing_key(bob.pk), {"old-page": group.pk}, 60)
    assert presence.viewing([bob.pk]) == {}
