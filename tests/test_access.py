"""Nobody reads, posts in or changes a room they are not in; ids prove nothing."""

import pytest
from django.urls import reverse

from rooms import services
from tests.conftest import HTMX, membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def message(group, alice):
    return services.do_post_message(membership(group, alice), "members only").message


def room_urls(room, message):
    return [
        ("get", reverse("rooms:room", args=[room.pk]), {}),
        ("get", reverse("rooms:room", args=[room.pk]) + "?before=100", {}),
        ("get", reverse("rooms:composer", args=[room.pk]), {}),
        ("get", reverse("rooms:settings", args=[room.pk]), {}),
        ("get", reverse("rooms:message", args=[room.pk, message.pk]), {}),
        ("get", reverse("rooms:edit_message", args=[room.pk, message.pk]), {}),
        ("post", reverse("rooms:post_message", args=[room.pk]), {"body": "let me in"}),
        ("post", reverse("rooms:edit_message", args=[room.pk, message.pk]), {"body": "defaced"}),
        ("get", reverse("rooms:delete_message", args=[room.pk, message.pk]), {}),
        ("post", reverse("rooms:delete_message", args=[room.pk, message.pk]), {}),
        ("post", reverse("rooms:mark_read", args=[room.pk]), {"seq": "1"}),
        ("post", reverse("rooms:rename", args=[room.pk]), {"title": "pwned"}),
        ("post", reverse("rooms:add_members", args=[room.pk]), {"members": "mallory"}),
        ("post", reverse("rooms:remove_member", args=[room.pk]), {"user_id": "1"}),
        ("post", reverse("rooms:transfer_ownership", args=[room.pk]), {"user_id": "1"}),
        ("post", reverse("rooms:leave", args=[room.pk]), {}),
        ("get", reverse("rooms:report", args=[room.pk, message.pk]), {}),
        ("post", reverse("rooms:report", args=[room.pk, message.pk]), {"reason": "spam"}),
        ("get", reverse("rooms:message_image", args=[room.pk, message.pk]), {}),
        ("post", reverse("rooms:set_admin", args=[room.pk]), {"user_id": "1", "admin": "on"}),
        ("post", reverse("rooms:invite_policy", args=[room.pk]), {}),
        ("post", reverse("rooms:create_invite", args=[room.pk]), {"expiry": "7d", "uses": "unlimited"}),
        ("post", reverse("rooms:revoke_invite", args=[room.pk, 1]), {}),
        ("post", reverse("rooms:accept_request", args=[room.pk]), {}),
        ("post", reverse("rooms:decline_request", args=[room.pk]), {}),
        ("post", reverse("rooms:block_request", args=[room.pk]), {}),
        ("get", reverse("assistant:settings", args=[room.pk]), {}),
        ("post", reverse("assistant:settings", args=[room.pk]), {"name": "Mine", "reply_mode": "always"}),
        ("get", reverse("assistant:stop", args=[room.pk, message.pk]), {}),
        ("post", reverse("assistant:stop", args=[room.pk, message.pk]), {}),
        ("get", reverse("assistant:retry", args=[room.pk, message.pk]), {}),
        ("post", reverse("assistant:retry", args=[room.pk, message.pk]), {}),
        ("get", reverse("assistant:share", args=[room.pk, message.pk]), {}),
    ]


def test_a_non_member_gets_404_for_everything_in_a_room(mallory_client, group, message):
    before = (group.messages.count(), group.memberships.count())
    for method, url, data in room_urls(group, message):
        for headers in ({}, HTMX):
            response = getattr(mallory_client, method)(url, data, **headers)
            assert response.status_code == 404, (method, url)
            assert b"members only" not in response.content
    group.refresh_from_db()
    assert group.title == "Trip planning"
    assert (group.messages.count(), group.memberships.count()) == before
    message.refresh_from_db()
    assert message.body == "members only"


def test_a_non_member_of_a_direct_room_gets_404(mallory_client, direct, alice):
    message = services.do_post_message(membership(direct, alice), "members only").message
    for method, url, data in room_urls(direct, message):
        assert getattr(mallory_client, method)(url, data).status_code == 404, url


def test_anonymous_visitors_are_sent_to_login_for_everything(client, group, message):
    for method, url, data in room_urls(group, message):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("account_login"))
    assert group.messages.filter(body="let me in").count() == 0


def test_a_message_id_from_another_room_is_not_found(alice_client, alice, group, direct):
    """A forged message id that exists elsewhere behaves exactly like one that does not."""
    other = services.do_post_message(membership(direct, alice), "in the direct room").message
    for name in ("rooms:message", "rooms:edit_message"):
        assert alice_client.get(reverse(name, args=[group.pk, other.pk])).status_code == 404
    response = alice_client.post(reverse("rooms:delete_message", args=[group.pk, other.pk]))
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.deleted_at is None


def test_a_removed_member_loses_every_path_at_once(alice, bob_client, bob, group, message):
    services.do_remove_member(alice, group, bob)
    for method, url, data in room_urls(group, message):
        assert getattr(bob_client, method)(url, data).status_code == 404, url


def test_an_archived_group_is_gone_for_everyone(alice_client, alice):
    room = services.do_create_group(alice, "Solo", [])
    services.do_leave_room(membership(room, alice))
    assert alice_client.get(room.get_absolute_url()).status_code == 404


def test_deactivated_accounts_cannot_use_rooms(bob_client, bob, group):
    bob.is_active = False
    bob.save()
    response = bob_client.get(group.get_absolute_url())
    assert response.status_code in (302, 404)
    assert b"Trip planning" not in response.content


def test_media_requires_login(client, alice_client, alice, settings):
    (settings.MEDIA_ROOT / "avatars").mkdir(parents=True)
    (settings.MEDIA_ROOT / "avatars" / "x.webp").write_bytes(b"RIFF")
    assert client.get("/media/avatars/x.webp").status_code == 302
    assert alice_client.get("/media/avatars/x.webp").status_code == 200
    assert alice_client.get("/media/../calpico.sqlite3").status_code in (400, 404)


# What each role in a group may do: owner, admin, member.


def _as(role, alice, bob, carol):
    """The acting user for a role in the `group` fixture (alice owns it)."""
    return {"owner": alice, "admin": bob, "member": carol}[role]


def _attempts(group, alice, bob, carol, mallory):
    target_message = services.do_post_message(membership(group, mallory), "someone else's").message
    return {
        "rename": ("post", reverse("rooms:rename", args=[group.pk]), {"title": "Renamed"}),
        "add member": ("post", reverse("rooms:add_members", args=[group.pk]), {"members": "dave"}),
        "remove member": ("post", reverse("rooms:remove_member", args=[group.pk]), {"user_id": mallory.pk}),
        "remove others' message": (
            "post",
            reverse("rooms:delete_message", args=[group.pk, target_message.pk]),
            {},
        ),
        "name an admin": (
            "post",
            reverse("rooms:set_admin", args=[group.pk]),
            {"user_id": mallory.pk, "admin": "on"},
        ),
        "hand over": ("post", reverse("rooms:transfer_ownership", args=[group.pk]), {"user_id": mallory.pk}),
        "invite policy": ("post", reverse("rooms:invite_policy", args=[group.pk]), {}),
    }


ALLOWED = {
    "owner": {
        "rename",
        "add member",
        "remove member",
        "remove others' message",
        "name an admin",
        "hand over",
        "invite policy",
    },
    "admin": {"rename", "add member", "remove member", "remove others' message"},
    "member": set(),
}


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_each_role_does_exactly_what_it_may(role, alice, bob, carol, group):
    from tests.conftest import client_for, make_user

    mallory = make_user("mallory")
    make_user("dave")
    services.do_add_members(alice, group, [mallory])
    services.do_set_admin(alice, group, bob, True)
    client = client_for(_as(role, alice, bob, carol))
    for name, (method, url, data) in _attempts(group, alice, bob, carol, mallory).items():
        response = getattr(client, method)(url, data)
        if name in ALLOWED[role]:
            assert response.status_code == 302, (role, name, response.status_code)
        else:
            assert response.status_code == 403, (role, name, response.status_code)
        # Put things back for the next attempt.
        group.refresh_from_db()
        if group.owner_id != alice.pk:
            group.owner = alice
            group.save(update_fields=["owner"])
        if not group.memberships.filter(user=mallory).exists():
            services.do_add_members(alice, group, [mallory])
