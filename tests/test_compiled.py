"""rooms/compiled.py: the room page's queries are built once per process and run with other
ids. Each must answer exactly what the ORM answers for every person and room, whatever the
ids (a room's id is often someone's id too: swapping the two would open rooms), including
rooms someone left, was removed from, declined or that were archived."""

import threading

import pytest
from django.db import connection, transaction
from django.http import Http404

from accounts.models import User
from rooms import services
from rooms.access import access_membership
from rooms.compiled import CompiledModels
from rooms.models import Membership, Message, Room
from rooms.queries import history_page, room_members, sidebar_entries
from tests.conftest import make_user, membership
from tests.test_room_page import fill

pytestmark = pytest.mark.django_db


def _orm_membership(user: User, room_id: int) -> int | None:
    found = (
        Membership.objects.filter(room_id=room_id, user=user, room__archived_at__isnull=True)
        .exclude(request=Membership.Request.DECLINED)
        .first()
    )
    return found.pk if found else None


def _compiled_membership(user: User, room_id: int, with_assistant: bool) -> int | None:
    try:
        return access_membership(user, room_id, with_assistant=with_assistant).pk
    except Http404:
        return None


@pytest.fixture
def world(alice, bob, carol, mallory):
    people = [alice, bob, carol, mallory, *(make_user(f"p{i}") for i in range(4))]
    rooms = [services.do_create_group(alice, "Kept", [bob, carol])]
    left = services.do_create_group(bob, "Left", [alice, carol])
    services.do_leave_room(membership(left, carol))
    removed = services.do_create_group(carol, "Removed", [alice, bob])
    services.do_remove_member(carol, removed, alice)
    archived = services.do_create_group(mallory, "Archived", [alice])
    Room.objects.filter(pk=archived.pk).update(archived_at=archived.created_at)
    declined = services.do_open_direct_room(people[4], bob)
    services.do_post_message(membership(declined, people[4]), "hello")
    services.do_decline_request(membership(declined, bob))
    pending = services.do_open_direct_room(people[5], carol)
    services.do_post_message(membership(pending, people[5]), "hi")
    rooms += [left, removed, archived, declined, pending]
    rooms += [
        services.do_create_group(p, f"Room {i}", people[i % 3 : i % 3 + 2]) for i, p in enumerate(people)
    ]
    return people, rooms


def test_the_compiled_membership_check_answers_as_the_orm_for_every_pair(world):
    people, rooms = world
    ids = sorted({r.pk for r in rooms} | {p.pk for p in people} | {0, 10**6})
    allowed = 0
    for person in people:
        for room_id in ids:
            expected = _orm_membership(person, room_id)
            allowed += expected is not None
            for with_assistant in (False, True):
                assert _compiled_membership(person, room_id, with_assistant) == expected, (person, room_id)
    assert allowed > len(people)  # the world has members, not only outsiders


def test_the_compiled_page_queries_answer_as_the_orm(world):
    people, rooms = world
    for room in rooms:
        fill(room, room.owner or people[0], 7)
    for room in rooms:
        orm_members = list(
            Membership.objects.filter(room=room).order_by("joined_at", "pk").values_list("user", flat=True)
        )
        assert sorted(u.pk for u in room_members(room)) == sorted(orm_members)
        for before in (None, 1, 3, 8, 10**6):
            page = history_page(room, before=before, size=3, reactions=False)
            orm = Message.objects.filter(room=room).order_by("-seq")
            if before is not None:
                orm = orm.filter(seq__lt=before)
            assert [m.pk for m in page.messages] == [m.pk for m in orm[:3]][::-1], (room, before)
            assert all(m.room_id == room.pk for m in page.messages)
    for person in people:
        orm_rooms = set(
            Membership.objects.filter(user=person, room__archived_at__isnull=True, request="").values_list(
                "room_id", flat=True
            )
        )
        assert {entry.room.pk for entry in sidebar_entries(person)} == orm_rooms


@pytest.mark.django_db(transaction=True)
def test_a_compiled_query_built_on_one_connection_runs_on_another(alice, bob, group):
    """Compiled queries are kept for the process: one built on a thread (its connection)
    runs on whichever connection the next caller has."""
    query = CompiledModels(Membership.objects.filter(room_id=-7_000_002).order_by("pk"), room=-7_000_002)
    assert {m.user_id for m in query.run(room=group.pk)} >= {alice.pk, bob.pk}
    answers: list[object] = []

    def other_thread():
        from django.db import connections

        try:
            answers.append(connections["default"] is not connection)
            answers.append(sorted(m.user_id for m in query.run(room=group.pk)))
        except Exception as error:
            answers.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert answers == [True, sorted(m.user_id for m in Membership.objects.filter(room=group))]


def test_only_plain_querysets_with_every_sentinel_compile(group):
    with pytest.raises(ValueError, match="sentinels not found"):
        CompiledModels(Membership.objects.filter(room_id=1), room=-7_000_002)
    with pytest.raises(ValueError, match="only plain model querysets"):
        CompiledModels(Membership.objects.filter(room_id=-7_000_002).values("pk"), room=-7_000_002)
    with pytest.raises(ValueError, match="only plain model querysets"):
        CompiledModels(
            Membership.objects.filter(room_id=-7_000_002).prefetch_related("user"), room=-7_000_002
        )
    with transaction.atomic(), pytest.raises(ValueError, match="only plain model querysets"):
        CompiledModels(Membership.objects.filter(room_id=-7_000_002).select_for_update(), room=-7_000_002)


def test_a_slot_refuses_what_would_change_the_sql(group):
    """The SQL was built for one value per slot: None would be "= NULL" (the ORM writes IS
    NULL), a list an IN, so they are refused rather than answered wrongly."""
    query = CompiledModels(
        Message.objects.filter(room_id=-7_000_002, reply_to_id=-7_000_003), room=-7_000_002, reply=-7_000_003
    )
    assert query.run(room=group.pk, reply=1) == []
    for wrong in (None, [1, 2], True):
        with pytest.raises(TypeError):
            query.run(room=group.pk, reply=wrong)  # type: ignore[arg-type]
