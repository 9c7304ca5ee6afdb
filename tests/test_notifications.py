"""Notification settings: the desktop switch, per-room mute, and the sidebar refresh."""

import pytest
from django.urls import reverse

from rooms import services
from tests.conftest import make_user, membership

pytestmark = pytest.mark.django_db


def test_desktop_notifications_are_off_until_switched_on(alice_client, alice):
    page = alice_client.get(reverse("rooms:notifications")).content.decode()
    assert 'id="desktop-notifications">' in page  # unchecked
    assert 'data-desktop-notifications="off"' in page
    response = alice_client.post(reverse("rooms:notifications"), {"desktop_notifications": "on"})
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.desktop_notifications
    page = alice_client.get(reverse("rooms:notifications")).content.decode()
    assert 'id="desktop-notifications" checked>' in page
    assert 'data-desktop-notifications="on"' in page
    alice_client.post(reverse("rooms:notifications"), {})
    alice.refresh_from_db()
    assert not alice.desktop_notifications


def test_mute_and_unmute_a_room(alice_client, alice, group):
    response = alice_client.post(reverse("rooms:mute", args=[group.pk]), {"muted": "on"})
    assert response["Location"] == reverse("rooms:settings", args=[group.pk])
    assert membership(group, alice).muted
    sidebar = alice_client.get(reverse("rooms:index")).content.decode()
    assert "is-muted" in sidebar
    alice_client.post(reverse("rooms:mute", args=[group.pk]), {"next": "notifications"})
    assert not membership(group, alice).muted


def test_muting_is_per_member(alice_client, bob, group):
    alice_client.post(reverse("rooms:mute", args=[group.pk]), {"muted": "on"})
    assert not membership(group, bob).muted


def test_nobody_mutes_a_room_they_are_not_in(mallory_client, group):
    assert mallory_client.post(reverse("rooms:mute", args=[group.pk]), {"muted": "on"}).status_code == 404


def test_notifications_page_lists_every_room_with_its_state(alice_client, alice, group, direct):
    alice_client.post(reverse("rooms:mute", args=[group.pk]), {"muted": "on"})
    page = alice_client.get(reverse("rooms:notifications")).content.decode()
    assert "Trip planning" in page and "Bob Builder" in page
    assert ">Unmute<" in page and ">Mute<" in page


def test_sidebar_fragment_for_reconnecting_pages(alice_client, group, mallory):
    body = alice_client.get(
        reverse("rooms:sidebar"), {"room": group.pk}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "<html" not in body
    assert 'aria-current="page"' in body and "Trip planning" in body


@pytest.mark.parametrize("room", ["", "abc", "999999"])
def test_sidebar_fragment_ignores_rooms_you_are_not_in(alice_client, group, room):
    body = alice_client.get(reverse("rooms:sidebar"), {"room": room}).content.decode()
    assert "Trip planning" in body and 'aria-current="page"' not in body


def test_app_pages_open_the_live_socket_for_their_room(alice_client, group):
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert f'ws-connect="/ws/?room={group.pk}"' in page
    index = alice_client.get(reverse("rooms:index")).content.decode()
    assert 'ws-connect="/ws/"' in index


def test_a_room_s_settings_page_does_not_connect_as_the_room(alice_client, group):
    """Only the room's page shows its messages: a settings page joined as the room would be
    sent the room's history to catch up on (or told to reload, again and again)."""
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert 'ws-connect="/ws/"' in page
    assert "data-room-id" not in page.split('id="live"')[1].split(">")[0]


def test_member_lists_show_who_is_online(alice_client, bob, group):
    from rooms import presence

    presence.refresh(bob.pk)
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert f'class="presence is-online" data-presence-user="{bob.pk}"' in page
    presence.forget(bob.pk)
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert f'class="presence" data-presence-user="{bob.pk}"' in page


def test_the_notifications_page_costs_the_same_with_30_rooms(
    alice, alice_client, django_assert_max_num_queries
):
    """Every room with its mute switch, from the sidebar's queries: none per room."""
    for i in range(30):
        room = services.do_create_group(alice, f"Group {i}", [make_user(f"friend{i}")])
        services.do_set_muted(membership(room, alice), i % 2 == 0)
    for i in range(10):
        services.do_open_direct_room(alice, make_user(f"stranger{i}"))
    # The user, the sidebar's rooms and direct partners, the people I blocked, and for the
    # notifications when closed, my devices and my verified email address.
    with django_assert_max_num_queries(6):
        page = alice_client.get(reverse("rooms:notifications")).content.decode()
    assert "Group 29" in page and "stranger9" in page
