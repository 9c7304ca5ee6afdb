"""Group rooms: creating, renaming, members coming and going, ownership."""

import pytest
from django.urls import reverse

from rooms import services
from rooms.models import Message, Room
from rooms.services import invites
from tests.conftest import make_user, membership

pytestmark = pytest.mark.django_db


def system_texts(room):
    return list(room.messages.filter(kind=Message.Kind.SYSTEM).order_by("seq").values_list("body", flat=True))


def test_create_a_group_with_a_title_and_members(alice_client, alice, bob, carol):
    response = alice_client.post(
        reverse("rooms:new_group"), {"title": "  Book   club ", "members": "@bob, Carol"}
    )
    room = Room.objects.get(kind=Room.Kind.GROUP)
    assert response["Location"] == room.get_absolute_url()
    assert room.title == "Book club"
    assert room.owner == alice
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob", "carol"}
    assert system_texts(room) == [
        "Alice Liddell created the group “Book club”",
        "Alice Liddell added Bob Builder and carol",
    ]


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "Give the group a name."), ("   ", "Give the group a name."), ("x" * 81, "at most 80 characters")],
)
def test_group_title_is_1_to_80_characters(alice_client, bob, title, message):
    response = alice_client.post(reverse("rooms:new_group"), {"title": title, "members": "bob"})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert 'value="bob"' in response.content.decode()  # what was typed is kept
    assert not Room.objects.exists()


def test_unknown_member_names_are_listed(alice_client, bob):
    response = alice_client.post(
        reverse("rooms:new_group"), {"title": "Club", "members": "bob ghost1 ghost2"}
    )
    assert response.status_code == 422
    assert "No account named “ghost1”, “ghost2”." in response.content.decode()
    assert not Room.objects.exists()


def test_group_size_is_limited_by_a_setting(alice_client, alice, bob, carol, settings):
    settings.ROOM_MAX_MEMBERS = 2
    response = alice_client.post(reverse("rooms:new_group"), {"title": "Club", "members": "bob carol"})
    assert response.status_code == 422
    assert "at most 2 members" in response.content.decode()
    assert not Room.objects.exists()


def test_a_group_of_one_is_allowed(alice_client):
    response = alice_client.post(reverse("rooms:new_group"), {"title": "Notes to self", "members": ""})
    assert response.status_code == 302


def test_owner_renames_the_group(alice_client, group):
    response = alice_client.post(reverse("rooms:rename", args=[group.pk]), {"title": "Lisbon 2027"})
    assert response.status_code == 302
    group.refresh_from_db()
    assert group.title == "Lisbon 2027"
    assert system_texts(group)[-1] == "Alice Liddell renamed the group to “Lisbon 2027”"


def test_rename_refuses_empty_title_and_keeps_the_old_one(alice_client, group):
    response = alice_client.post(reverse("rooms:rename", args=[group.pk]), {"title": " "})
    assert response.status_code == 422
    assert "Give the group a name." in response.content.decode()
    group.refresh_from_db()
    assert group.title == "Trip planning"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("rooms:rename", {"title": "Hijacked"}),
        ("rooms:add_members", {"members": "mallory"}),
        ("rooms:remove_member", {"user_id": "1"}),
        ("rooms:transfer_ownership", {"user_id": "2"}),
    ],
)
def test_only_the_owner_administers_a_group(bob_client, group, mallory, name, data):
    before = (group.title, group.owner_id, group.memberships.count())
    response = bob_client.post(reverse(name, args=[group.pk]), data)
    assert response.status_code == 403
    group.refresh_from_db()
    assert (group.title, group.owner_id, group.memberships.count()) == before


def test_owner_adds_members_who_start_with_history_read(alice_client, group, mallory):
    dave = make_user("dave")
    response = alice_client.post(reverse("rooms:add_members", args=[group.pk]), {"members": "dave"})
    assert response.status_code == 302
    assert system_texts(group)[-1] == "Alice Liddell added dave"
    group.refresh_from_db()
    dave_membership = membership(group, dave)
    assert dave_membership.last_read_seq == group.last_seq - 1  # only "added dave" is new to dave


def test_adding_someone_already_in_the_group_changes_nothing(alice_client, group):
    before = group.messages.count()
    response = alice_client.post(reverse("rooms:add_members", args=[group.pk]), {"members": "bob"})
    assert response.status_code == 302
    assert group.messages.count() == before


def test_adding_beyond_the_size_limit_is_refused(alice_client, group, settings, mallory):
    settings.ROOM_MAX_MEMBERS = 3
    response = alice_client.post(reverse("rooms:add_members", args=[group.pk]), {"members": "mallory"})
    assert response.status_code == 422
    assert "at most 3 members" in response.content.decode()
    assert not group.memberships.filter(user=mallory).exists()


def test_owner_removes_a_member_who_loses_access_at_once(alice_client, bob_client, group, bob):
    assert bob_client.get(group.get_absolute_url()).status_code == 200
    response = alice_client.post(reverse("rooms:remove_member", args=[group.pk]), {"user_id": bob.pk})
    assert response.status_code == 302
    assert bob_client.get(group.get_absolute_url()).status_code == 404
    assert system_texts(group)[-1] == "Alice Liddell removed Bob Builder"
    assert "Trip planning" not in bob_client.get(reverse("rooms:index")).content.decode()


def test_removing_someone_not_in_the_group_says_so(alice_client, group, mallory):
    response = alice_client.post(reverse("rooms:remove_member", args=[group.pk]), {"user_id": mallory.pk})
    assert response.status_code == 302
    page = alice_client.get(response["Location"]).content.decode()
    assert "That person is not in this group." in page


@pytest.mark.parametrize("user_id", ["", "abc", "999999", "-1"])
def test_forged_member_ids_are_refused_with_a_message(alice_client, group, user_id):
    response = alice_client.post(reverse("rooms:remove_member", args=[group.pk]), {"user_id": user_id})
    assert response.status_code == 302
    assert group.memberships.count() == 3


def test_any_member_can_leave(bob_client, group, bob):
    response = bob_client.post(reverse("rooms:leave", args=[group.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("rooms:index")
    assert not group.memberships.filter(user=bob).exists()
    assert system_texts(group)[-1] == "Bob Builder left"


def test_when_the_owner_leaves_the_longest_standing_member_becomes_owner(alice_client, alice, bob, carol):
    room = services.do_create_group(alice, "Club", [carol])
    services.do_add_members(alice, room, [bob])  # bob joins after carol
    alice_client.post(reverse("rooms:leave", args=[room.pk]))
    room.refresh_from_db()
    assert room.owner == carol
    assert system_texts(room)[-2:] == ["Alice Liddell left", "carol is now the owner"]


def test_a_group_left_empty_is_archived(alice_client, alice):
    room = services.do_create_group(alice, "Solo", [])
    alice_client.post(reverse("rooms:leave", args=[room.pk]))
    room.refresh_from_db()
    assert room.archived_at is not None
    assert room.owner is None


def test_owner_hands_ownership_to_another_member(alice_client, group, bob):
    response = alice_client.post(reverse("rooms:transfer_ownership", args=[group.pk]), {"user_id": bob.pk})
    assert response.status_code == 302
    group.refresh_from_db()
    assert group.owner == bob
    assert system_texts(group)[-1] == "Alice Liddell made Bob Builder the owner"
    # The former owner is now a plain member.
    assert alice_client.post(reverse("rooms:rename", args=[group.pk]), {"title": "x"}).status_code == 403


def test_settings_page_lists_members_with_the_owner_first(bob_client, group):
    page = bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    body = page[page.index("<h2>Members") :]
    assert body.index("Alice Liddell") < body.index("Bob Builder") < body.index("@carol")
    assert "Owner" in body
    assert "Make owner" not in body  # bob is not the owner


def test_the_settings_page_costs_the_same_with_30_members_and_their_invites(
    alice, alice_client, django_assert_max_num_queries
):
    """Members, their roles, who may be removed and the open invite links: no query per person."""
    people = [make_user(f"member{i}") for i in range(30)]
    room = services.do_create_group(alice, "Big group", people)
    services.do_set_members_can_invite(alice, room, True)
    for person in people[:10]:
        invites.do_create_invite(person, membership(room, person), expiry="7d", uses="unlimited")
    for i in range(30):
        services.do_create_group(alice, f"Group {i}", [people[i]])
    # The user, my membership, the members with theirs, the invite links, the sidebar's
    # rooms, the people I blocked, and the assistant's name; the room's AI budget and this
    # month's use of it (one query for the meter, by kind and by member).
    with django_assert_max_num_queries(9):
        page = alice_client.get(reverse("rooms:settings", args=[room.pk])).content.decode()
    assert "(31 of at most" in page and "member29" in page and page.count("Remove<") == 30
