"""Presence keys: kept fresh by one timer per process, not one per socket."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from rooms import presence
from tests.sockets import connect, connected, frames, json_frames

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
