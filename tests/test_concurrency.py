"""Concurrent writers on PostgreSQL: the database, not luck, keeps rooms consistent."""

import threading
import uuid

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import close_old_connections, connection

from rooms import emoji, services
from rooms.models import Message, Reaction, Room
from tests.conftest import make_user, membership

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def run_together(count: int, work) -> list:
    """Run `work(i)` in `count` threads released at the same moment."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:  # collected and asserted on by the caller
            results[i] = exc
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_simultaneous_posts_get_consecutive_sequence_numbers():
    """Ten people posting at the same instant: no gaps, no duplicates."""
    owner = make_user("owner")
    people = [make_user(f"poster{i}") for i in range(10)]
    room = services.do_create_group(owner, "Busy", people)
    start = Room.objects.get(pk=room.pk).last_seq

    results = run_together(10, lambda i: services.do_post_message(membership(room, people[i]), f"hi {i}"))

    assert all(not isinstance(r, Exception) for r in results), results
    seqs = sorted(Message.objects.filter(room=room).values_list("seq", flat=True))
    assert seqs == list(range(1, start + 11))
    assert Room.objects.get(pk=room.pk).last_seq == start + 10


def test_a_retried_send_racing_itself_stores_one_message():
    alice = make_user("alice")
    room = services.do_create_group(alice, "Retry", [])
    client_id = uuid.uuid4()
    results = run_together(
        6, lambda i: services.do_post_message(membership(room, alice), "once", client_id=client_id)
    )
    assert all(not isinstance(r, Exception) for r in results), results
    assert Message.objects.filter(room=room, body="once").count() == 1
    assert sum(r.created for r in results) == 1
    assert len({r.message.pk for r in results}) == 1


def test_two_people_opening_their_direct_room_at_once_share_one_room():
    alice, bob = make_user("alice"), make_user("bob")
    results = run_together(
        8, lambda i: services.do_open_direct_room(*((alice, bob) if i % 2 else (bob, alice)))
    )
    assert all(not isinstance(r, Exception) for r in results), results
    assert len({room.pk for room in results}) == 1
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


def test_people_racing_for_the_last_of_20_emoji_get_one_in(settings):
    """Nineteen emoji on a message, six people each adding a new one at once: the
    message's row lock lets exactly one in; the others are told why."""
    settings.RATE_REACTIONS_PER_10_SECONDS = 0
    owner = make_user("owner")
    people = [make_user(f"reactor{i}") for i in range(6)]
    room = services.do_create_group(owner, "Popular", people)
    message = services.do_post_message(membership(room, owner), "Vote with emoji").message
    offered = [e.unicode for e in emoji.offered()]
    for symbol in offered[:19]:
        services.do_toggle_reaction(membership(room, owner), message, symbol)

    results = run_together(
        6, lambda i: services.do_toggle_reaction(membership(room, people[i]), message, offered[30 + i])
    )

    added = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, ValidationError)]
    assert len(added) == 1 and len(refused) == 5, results
    assert Reaction.objects.filter(message=message).values("emoji").distinct().count() == 20


def test_a_double_click_racing_itself_leaves_one_reaction_or_none():
    """Two toggles of one emoji at once are serialized: added then taken back, never two rows
    and never an error."""
    alice = make_user("alice")
    room = services.do_create_group(alice, "Clicks", [])
    message = services.do_post_message(membership(room, alice), "Click twice").message
    results = run_together(
        2, lambda i: services.do_toggle_reaction(membership(room, alice), message, "\u2764\ufe0f")
    )
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.added for r in results) == [False, True]
    assert not Reaction.objects.filter(message=message).exists()


def test_the_cache_is_redis_when_redis_url_is_set(settings):
    """Rate limits (allauth's and ours) must hold across processes, so they need Redis."""
    assert settings.CACHES["default"]["BACKEND"] == "calpico.cache.FailSoftRedisCache"
    key = f"probe-{uuid.uuid4()}"
    cache.set(key, "shared", 30)
    import redis

    raw = redis.Redis.from_url(settings.REDIS_URL)
    assert any(key in k.decode() for k in raw.keys(f"*{key}*"))
    cache.delete(key)


def test_competing_runners_claim_each_assistant_run_exactly_once(settings):
    """Four workers claiming at once from twelve runs in six rooms: every run is taken by
    one worker, and no room ever has two replies running."""
    from assistant import runs as assistant_runs
    from assistant.models import AssistantRun, AssistantSettings

    settings.OPENAI_API_KEY = "configured"
    owner = make_user("owner")
    rooms = [services.do_create_group(owner, f"Room {i}", []) for i in range(6)]
    # Replies only, here: no decisions of Automatically (tests/test_assistant_auto.py).
    AssistantSettings.objects.bulk_create(
        [AssistantSettings(room=room, reply_mode="mention") for room in rooms]
    )
    for room in rooms:
        for n in range(2):
            message = services.do_post_message(membership(room, owner), f"first {n}").message
            AssistantRun.objects.create(room=room, requested_by=owner, trigger=message)

    def claim_all(i):
        claimed = []
        while (run := assistant_runs.claim_next(f"worker-{i}")) is not None:
            claimed.append(run.run_id)
        return claimed

    results = run_together(4, claim_all)
    assert all(not isinstance(r, Exception) for r in results), results
    taken = [run_id for claimed in results for run_id in claimed]
    assert len(taken) == len(set(taken)) == 6  # one per room; each room's second run waits
    running = AssistantRun.objects.filter(status="running")
    assert sorted(running.values_list("room_id", flat=True)) == sorted(r.pk for r in rooms)
    assert AssistantRun.objects.filter(status="queued").count() == 6


def test_people_racing_for_an_invites_last_use_get_in_exactly_once():
    """Six people press Join on a one-use link at the same instant: one gets in."""
    from rooms.models import Invite, Membership
    from rooms.services import invites

    owner = make_user("owner")
    room = services.do_create_group(owner, "Exclusive", [])
    invite = invites.do_create_invite(owner, membership(room, owner), expiry="1d", uses="1")
    people = [make_user(f"racer{i}") for i in range(6)]

    results = run_together(6, lambda i: invites.do_join_by_invite(people[i], invite.token))

    joined = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, invites.CannotJoin)]
    assert len(joined) == 1 and len(refused) == 5, results
    assert all(r.problem == "used_up" for r in refused)
    assert Invite.objects.get(pk=invite.pk).uses == 1
    assert Membership.objects.filter(room=room).count() == 2


def test_two_commits_for_one_epoch_of_an_encrypted_group_one_is_accepted():
    """MLS needs every member to apply the same commits in the same order: the delivery
    service takes one commit per epoch, even when several arrive at the same instant."""
    import base64
    import os

    from e2ee import services as e2ee
    from e2ee.models import Device, Group, Handshake

    alice = make_user("alice")
    room = services.do_create_group(alice, "Secret", [make_user("bob")], encrypted=True)
    devices = [
        Device.objects.create(user=alice, signature_key=base64.b64encode(os.urandom(32)).decode())
        for _ in range(4)
    ]
    assert e2ee.do_create_group(room, devices[0])

    def commit(i):
        data = base64.b64encode(b"\x00\x01\x00\x02" + os.urandom(60)).decode()
        return e2ee.do_commit(room, devices[i], epoch=0, commit=data, welcome=None, key_package_ids=None)

    results = run_together(4, commit)
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.accepted for r in results) == [False, False, False, True]
    assert {r.epoch for r in results} == {1}
    assert Group.objects.get(room=room).epoch == 1
    assert Handshake.objects.filter(room=room, kind="commit").count() == 1
