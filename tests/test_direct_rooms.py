"""Direct messages: one room per pair, opened from a profile or New message."""

import pytest
from django.urls import reverse

from rooms.models import Room
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def open_dm(client, username):
    return client.post(reverse("rooms:open_direct", args=[username]))


def test_message_button_opens_a_direct_room_with_both_people(alice_client, alice, bob):
    response = open_dm(alice_client, "bob")
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert response["Location"] == room.get_absolute_url()
    assert set(room.memberships.values_list("user__username", flat=True)) == {"alice", "bob"}
    page = alice_client.get(room.get_absolute_url())
    assert page.status_code == 200
    assert '<h1 id="room-title">Bob Builder</h1>' in page.content.decode()


def test_starting_again_from_either_side_opens_the_same_room(alice_client, bob_client, alice, bob):
    first = open_dm(alice_client, "bob")["Location"]
    assert open_dm(alice_client, "BOB")["Location"] == first
    assert open_dm(bob_client, "alice")["Location"] == first
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


def test_nobody_can_message_themself(alice_client, alice):
    response = open_dm(alice_client, "alice")
    assert response.status_code == 302
    assert response["Location"] == "/u/alice/"
    assert not Room.objects.exists()
    assert "can&#x27;t send a direct message to yourself" in alice_client.get("/u/alice/").content.decode()


def test_unknown_or_deactivated_people_cannot_be_messaged(alice_client):
    assert open_dm(alice_client, "nobody").status_code == 404
    gone = make_user("gone")
    gone.is_active = False
    gone.save()
    assert open_dm(alice_client, "gone").status_code == 404
    assert not Room.objects.exists()


def test_opening_a_direct_room_needs_a_post(alice_client, bob):
    """A link or an image tag cannot create rooms on someone's behalf."""
    assert alice_client.get(reverse("rooms:open_direct", args=["bob"])).status_code == 405


def test_direct_room_has_no_leave_and_no_owner_controls(alice_client, direct):
    body = alice_client.get(reverse("rooms:settings", args=[direct.pk])).content.decode()
    assert "Leave" not in body
    assert "Make owner" not in body
    response = alice_client.post(reverse("rooms:leave", args=[direct.pk]))
    assert response.status_code == 302
    assert direct.memberships.count() == 2


def test_new_message_page_searches_people(alice_client, bob):
    page = alice_client.get(reverse("rooms:new_direct"))
    assert page.status_code == 200
    assert 'hx-get="/people/"' in page.content.decode()
    results = alice_client.get("/people/", {"q": "bo"}, HTTP_HX_REQUEST="true").content.decode()
    assert reverse("rooms:open_direct", args=["bob"]) in results
