"""Invite links: who creates them, what the preview shows, and every way one stops working."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from rooms import services
from rooms.live_groups import room_group
from rooms.models import Invite, Membership, Message
from rooms.services import invites
from tests.conftest import client_for, make_user, membership


def create(client, room, expiry="7d", uses="unlimited"):
    return client.post(reverse("rooms:create_invite", args=[room.pk]), {"expiry": expiry, "uses": uses})


def make_invite(room, user, **kwargs) -> Invite:
    return invites.do_create_invite(
        user, membership(room, user), expiry=kwargs.get("expiry", "7d"), uses=kwargs.get("uses", "unlimited")
    )


def join(client, invite):
    return client.post(reverse("rooms:join_confirm", args=[invite.token]))


def test_a_member_creates_a_link_and_the_room_lists_it(bob_client, group):
    response = create(bob_client, group, expiry="1d", uses="5")
    assert response.status_code == 302
    invite = Invite.objects.get(room=group)
    assert invite.max_uses == 5 and invite.created_by.username == "bob"
    assert dt.timedelta(hours=23) < invite.expires_at - timezone.now() <= dt.timedelta(days=1)
    assert len(invite.token) >= 43  # 32 random bytes, base64: 256 bits
    page = bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert invite.get_absolute_url() in page and "0 uses of 5" in page


def test_tokens_are_unguessable_and_unique(alice, group):
    tokens = {make_invite(group, alice).token for _ in range(20)}
    assert len(tokens) == 20


@pytest.mark.parametrize(("expiry", "uses"), [("2d", "5"), ("7d", "1000"), ("", "")])
def test_made_up_choices_are_refused(alice_client, group, expiry, uses):
    assert create(alice_client, group, expiry, uses).status_code == 422
    assert not Invite.objects.exists()


def test_the_owner_can_keep_links_to_admins(alice_client, bob_client, alice, bob, group):
    alice_client.post(reverse("rooms:invite_policy", args=[group.pk]))  # no "allowed": admins only
    group.refresh_from_db()
    assert group.members_can_invite is False
    assert create(bob_client, group).status_code == 403
    services.do_set_admin(alice, group, bob, True)
    assert create(bob_client, group).status_code == 302
    assert Message.objects.filter(
        room=group, body__contains="made invite links owner and admins only"
    ).exists()


def test_direct_rooms_have_no_invite_links(alice_client, direct):
    assert create(alice_client, direct).status_code == 403


def test_non_members_cannot_create_or_revoke(alice, mallory_client, group):
    invite = make_invite(group, alice)
    assert create(mallory_client, group).status_code == 404
    url = reverse("rooms:revoke_invite", args=[group.pk, invite.pk])
    assert mallory_client.post(url).status_code == 404


def test_admins_revoke_any_link_members_only_their_own(alice, bob, carol_client, alice_client, group):
    by_alice = make_invite(group, alice)
    by_bob = make_invite(group, bob)
    assert carol_client.post(reverse("rooms:revoke_invite", args=[group.pk, by_alice.pk])).status_code == 403
    assert alice_client.post(reverse("rooms:revoke_invite", args=[group.pk, by_bob.pk])).status_code == 302
    by_bob.refresh_from_db()
    assert by_bob.revoked_at is not None
    assert by_bob not in invites.active_invites(group)


def test_the_preview_shows_the_room_before_joining(alice, mallory_client, group):
    from assistant.services import do_update_assistant

    do_update_assistant(alice, group, name="Planner", personality="", reply_mode="always")
    invite = make_invite(group, alice)
    page = mallory_client.get(invite.get_absolute_url()).content.decode()
    assert "Trip planning" in page and "3 members" in page
    assert "Planner" in page and "replies to every message" in page
    assert "Join Trip planning" in page
    assert not Membership.objects.filter(room=group, user__username="mallory").exists()


def test_a_visitor_without_an_account_sees_the_preview_with_sign_up(alice, group):
    invite = make_invite(group, alice)
    page = Client().get(invite.get_absolute_url()).content.decode()
    assert "Trip planning" in page
    assert f"/accounts/signup/?next=/join/{invite.token}/" in page


def test_signing_up_from_an_invite_comes_back_to_the_preview(alice, group):
    invite = make_invite(group, alice)
    visitor = Client()
    response = visitor.post(
        f"/accounts/signup/?next={invite.get_absolute_url()}",
        {
            "username": "newcomer",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
            "next": invite.get_absolute_url(),
        },
    )
    assert response.status_code == 302 and response["Location"] == invite.get_absolute_url()
    assert "Join Trip planning" in visitor.get(response["Location"]).content.decode()


def test_joining_adds_the_member_with_a_system_message_once(alice, mallory, mallory_client, group):
    invite = make_invite(group, alice)
    response = join(mallory_client, invite)
    assert response.status_code == 302 and response["Location"] == group.get_absolute_url()
    assert Membership.objects.filter(room=group, user=mallory).exists()
    assert Message.objects.filter(room=group, body="mallory joined with an invite link").count() == 1
    # Joining twice is harmless: no second message, no second use.
    assert join(mallory_client, invite).status_code == 302
    invite.refresh_from_db()
    assert invite.uses == 1
    assert Message.objects.filter(room=group, body__contains="joined").count() == 1


def test_an_expired_link_says_so_at_the_boundary(alice, mallory_client, group, monkeypatch):
    invite = make_invite(group, alice, expiry="1h")
    just_before = invite.expires_at - dt.timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: just_before)
    assert mallory_client.get(invite.get_absolute_url()).status_code == 200
    monkeypatch.setattr(timezone, "now", lambda: invite.expires_at)
    response = mallory_client.get(invite.get_absolute_url())
    assert response.status_code == 410 and "This invite link has expired" in response.content.decode()
    assert join(mallory_client, invite).status_code == 410
    assert not Membership.objects.filter(room=group, user__username="mallory").exists()


def test_a_used_up_link_says_so(alice, mallory_client, group):
    invite = make_invite(group, alice, uses="1")
    assert join(client_for(make_user("first")), invite).status_code == 302
    response = join(mallory_client, invite)
    assert response.status_code == 410 and "used as many times as it allows" in response.content.decode()


def test_revoked_and_unknown_links_look_the_same(alice, mallory_client, group):
    invite = make_invite(group, alice)
    invites.do_revoke_invite(alice, invite, membership(group, alice))
    revoked = mallory_client.get(invite.get_absolute_url())
    unknown = mallory_client.get(reverse("rooms:join", args=["x" * 43]))
    assert revoked.status_code == unknown.status_code == 404

    def page(response):  # the same page, but for the clock and the CSRF token
        pattern = rb'data-server-time="[^"]+"|"X-CSRFToken": "[^"]+"|name="csrfmiddlewaretoken" value="[^"]+"'
        return re.sub(pattern, b"", response.content)

    assert page(revoked) == page(unknown)
    assert join(mallory_client, invite).status_code == 404


def test_a_full_room_says_so(settings, alice, mallory_client, group):
    settings.ROOM_MAX_MEMBERS = 3
    invite = make_invite(group, alice)
    response = mallory_client.get(invite.get_absolute_url())
    assert response.status_code == 409 and "This group is full" in response.content.decode()
    assert join(mallory_client, invite).status_code == 409


def test_guessing_tokens_gets_an_address_refused(settings, alice, group):
    settings.RATE_FAILED_JOINS_PER_HOUR = 5
    guesser = Client()
    for i in range(5):
        assert guesser.get(reverse("rooms:join", args=[f"guess{i:040d}"])).status_code == 404
    real = make_invite(group, alice)
    response = guesser.get(real.get_absolute_url())
    assert response.status_code == 429 and "Too many invite links" in response.content.decode()
    # Someone else, elsewhere, is unaffected.
    assert Client(REMOTE_ADDR="10.0.0.2").get(real.get_absolute_url()).status_code == 200


def test_invite_links_created_are_rate_limited(settings, alice_client, group):
    settings.RATE_INVITES_PER_HOUR = 2
    assert create(alice_client, group).status_code == 302
    assert create(alice_client, group).status_code == 302
    response = create(alice_client, group)
    assert response.status_code == 422
    assert "You are creating invite links too often. Try again in" in response.content.decode()
    assert Invite.objects.count() == 2


def test_pages_showing_the_group_see_the_newcomer_at_once(alice, mallory, group, events):
    """Joining announces the system message and the new member list to the group's pages."""
    invite = make_invite(group, alice)
    with events() as sent:
        invites.do_join_by_invite(mallory, invite.token)
    to_pages = sent.to(room_group(group.pk))
    (message,) = [e for e in to_pages if e["type"] == "room.message"]
    assert "mallory joined with an invite link" in message["message_html"]
    (members,) = [e["html"] for e in to_pages if e["type"] == "room.fragment"]
    assert '<span id="room-member-count" hx-swap-oob="true">4 members</span>' in members
    assert 'data-mention="mallory"' in members


def test_members_see_only_their_own_links(alice, bob, carol_client, group):
    admins = make_invite(group, alice)
    mine = invites.do_create_invite(
        User.objects.get(username="carol"),
        membership(group, User.objects.get(username="carol")),
        expiry="7d",
        uses="unlimited",
    )
    page = carol_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert mine.token in page and admins.token not in page


def test_a_removed_member_cannot_come_back_through_their_own_link(alice, bob, group):
    link = make_invite(group, bob)
    services.do_remove_member(alice, group, bob)
    with pytest.raises(invites.CannotJoin):
        invites.do_join_by_invite(bob, link.token)
    assert not Membership.objects.filter(room=group, user=bob).exists()
