"""Nobody reads, posts in or changes a room they are not in; ids prove nothing."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import reverse

from rooms import access, presence, services
from rooms.services import invites
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
        ("get", reverse("rooms:message", args=[room.pk, message.seq]), {}),
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
    assert alice_client.get(reverse("rooms:edit_message", args=[group.pk, other.pk])).status_code == 404
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


# The rules in rooms.access that the views ask, one by one: who may and who may not.


def _system_message(room):
    from rooms.models import Message

    return room.messages.filter(kind=Message.Kind.SYSTEM).first()


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("admin", True), ("member", False)])
def test_only_the_owner_and_admins_pass_as_administrators(role, allowed, alice, bob, carol, group):
    """access_admin_membership: the owner and admins, never an ordinary member."""
    services.do_set_admin(alice, group, bob, True)
    user = _as(role, alice, bob, carol)
    if allowed:
        assert access.access_admin_membership(user, group.pk).user == user
    else:
        with pytest.raises(PermissionDenied):
            access.access_admin_membership(user, group.pk)


@pytest.mark.parametrize(("role", "allowed"), [("owner", True), ("admin", False), ("member", False)])
def test_only_the_owner_passes_as_the_owner(role, allowed, alice, bob, carol, group):
    """access_owner_membership: the owner alone, not even an admin."""
    services.do_set_admin(alice, group, bob, True)
    user = _as(role, alice, bob, carol)
    if allowed:
        assert access.access_owner_membership(user, group.pk).user == user
    else:
        with pytest.raises(PermissionDenied):
            access.access_owner_membership(user, group.pk)


def test_administering_a_room_one_is_not_in_is_not_found(mallory, alice, direct, group):
    """Outside the room, or in a direct room, the admin and owner checks never say 403 to a stranger."""
    for check in (access.access_admin_membership, access.access_owner_membership):
        with pytest.raises(Http404):
            check(mallory, group.pk)
        with pytest.raises(PermissionDenied):
            check(alice, direct.pk)


def test_only_the_recipient_answers_a_message_request(alice, mallory):
    """access_pending_request: the person asked, not the one asking, and only while it waits."""
    room = services.do_open_direct_room(alice, mallory)
    assert access.access_pending_request(mallory, room.pk).user == mallory
    with pytest.raises(Http404):
        access.access_pending_request(alice, room.pk)
    services.do_accept_request(membership(room, mallory))
    with pytest.raises(Http404):
        access.access_pending_request(mallory, room.pk)


def test_a_group_is_never_a_message_request(carol, group):
    with pytest.raises(Http404):
        access.access_pending_request(carol, group.pk)


def test_presence_shows_only_for_members_who_accepted_the_conversation(alice, mallory):
    """shows_presence: someone asked by a stranger does not show online to them until they accept."""
    room = services.do_open_direct_room(alice, mallory)
    assert access.shows_presence(membership(room, alice))
    assert not access.shows_presence(membership(room, mallory))
    services.do_accept_request(membership(room, mallory))
    assert access.shows_presence(membership(room, mallory))


def test_presence_stays_hidden_after_a_declined_request(alice, mallory):
    room = services.do_open_direct_room(alice, mallory)
    services.do_decline_request(membership(room, mallory))
    assert not access.shows_presence(membership(room, mallory))


def test_the_stranger_does_not_see_the_asked_person_online(alice_client, alice, mallory, monkeypatch):
    """The room page asks shows_presence before it asks who is online."""
    room = services.do_open_direct_room(alice, mallory)
    asked = []
    monkeypatch.setattr(presence, "online_user_ids", lambda ids: asked.extend(ids) or set(asked))
    response = alice_client.get(room.get_absolute_url())
    assert response.status_code == 200
    assert mallory.pk not in response.context["online"]
    assert mallory.pk not in asked


@pytest.fixture
def group_invites(alice, bob, carol, group):
    """One link each by the owner (alice), an admin (bob) and a member (carol)."""
    services.do_set_admin(alice, group, bob, True)
    return {
        user.username: invites.do_create_invite(user, membership(group, user), expiry="7d", uses="unlimited")
        for user in (alice, bob, carol)
    }


@pytest.mark.parametrize(
    ("role", "sees"),
    [("owner", {"alice", "bob", "carol"}), ("admin", {"alice", "bob", "carol"}), ("member", {"carol"})],
)
def test_who_sees_and_revokes_which_invite_link(role, sees, alice, bob, carol, group, group_invites):
    """can_manage_invite / visible_invites: the owner and admins every link, a member their own."""
    user = _as(role, alice, bob, carol)
    mine = membership(group, user)
    manageable = {
        name for name, invite in group_invites.items() if access.can_manage_invite(user, invite, mine)
    }
    assert manageable == sees
    visible = access.visible_invites(user, mine, invites.active_invites(group))
    assert {invite.created_by.username for invite in visible} == sees


def test_an_invite_link_of_another_group_is_nobody_elses_to_manage(alice, bob, carol, group, group_invites):
    other = services.do_create_group(bob, "Other", [alice])
    mine = membership(other, alice)
    assert not access.can_manage_invite(alice, group_invites["alice"], mine)
    assert access.visible_invites(alice, mine, group_invites.values()) == []
    with pytest.raises(Http404):
        access.access_invite(mine, group_invites["alice"].pk)


def test_an_invite_link_is_found_only_in_its_own_room(alice, group, group_invites):
    """access_invite: the room's link by its id; any other id is not found."""
    mine = membership(group, alice)
    assert access.access_invite(mine, group_invites["carol"].pk) == group_invites["carol"]
    for bad in (0, "x", "99999999", 2**63):
        with pytest.raises(Http404):
            access.access_invite(mine, bad)


def test_the_settings_page_lists_a_member_only_their_own_links(carol_client, group, group_invites):
    response = carol_client.get(reverse("rooms:settings", args=[group.pk]))
    assert [invite.pk for invite in response.context["invites"]] == [group_invites["carol"].pk]


def test_only_the_author_may_edit_a_message(alice, bob, group):
    """access_own_message: the author's own text message, never someone else's."""
    message = services.do_post_message(membership(group, alice), "mine").message
    assert access.access_own_message(alice, membership(group, alice), message.pk) == message
    with pytest.raises(PermissionDenied):
        # Not even the group's owner edits another's words.
        access.access_own_message(alice, membership(group, alice), _system_message(group).pk)
    with pytest.raises(PermissionDenied):
        access.access_own_message(bob, membership(group, bob), message.pk)


def test_a_deleted_message_is_edited_by_nobody(alice, group):
    message = services.do_post_message(membership(group, alice), "gone soon").message
    services.do_delete_message(alice, message)
    with pytest.raises(PermissionDenied):
        access.access_own_message(alice, membership(group, alice), message.pk)


def test_editing_a_message_of_another_room_is_not_found(alice, group, direct):
    other = services.do_post_message(membership(direct, alice), "elsewhere").message
    with pytest.raises(Http404):
        access.access_own_message(alice, membership(group, alice), other.pk)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("author", True), ("owner", True), ("admin", True), ("member", False)],
)
def test_who_may_delete_a_message(role, allowed, alice, bob, carol, group):
    """can_delete_message: the author, and a group's owner and admins; no other member."""
    from tests.conftest import make_user

    dave = make_user("dave")
    services.do_add_members(alice, group, [dave])
    services.do_set_admin(alice, group, bob, True)
    message = services.do_post_message(membership(group, dave), "dave's").message
    user = {"author": dave, "owner": alice, "admin": bob, "member": carol}[role]
    assert access.can_delete_message(user, message, membership(group, user)) is allowed


def test_system_and_deleted_messages_are_deleted_by_nobody(alice, group):
    message = services.do_post_message(membership(group, alice), "once").message
    services.do_delete_message(alice, message)
    for gone in (message, _system_message(group)):
        assert not access.can_delete_message(alice, gone, membership(group, alice))


def test_a_member_cannot_delete_anothers_message_over_http(carol_client, alice, group):
    """The delete view leaves the check to the service, which refuses with 403 and keeps the text."""
    message = services.do_post_message(membership(group, alice), "alice's").message
    response = carol_client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]))
    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.deleted_at, message.body) == (None, "alice's")
