"""The owner names admins; admins keep the group in order; nobody else can."""

import pytest
from django.urls import reverse

from rooms import services
from rooms.models import Membership, Message
from tests.conftest import membership


def make_admin(client, room, user, admin=True):
    data = {"user_id": user.pk}
    if admin:
        data["admin"] = "on"
    return client.post(reverse("rooms:set_admin", args=[room.pk]), data)


def test_the_owner_promotes_and_demotes_with_system_messages(alice_client, bob, group):
    make_admin(alice_client, group, bob)
    assert membership(group, bob).role == "admin"
    make_admin(alice_client, group, bob, admin=False)
    assert membership(group, bob).role == "member"
    notes = list(Message.objects.filter(room=group, kind="system").values_list("body", flat=True))
    assert "Alice Liddell made Bob Builder an admin" in notes
    assert "Alice Liddell removed Bob Builder as admin" in notes


def test_only_the_owner_names_admins(alice, bob, carol, bob_client, group):
    services.do_set_admin(alice, group, bob, True)
    assert make_admin(bob_client, group, carol).status_code == 403
    assert membership(group, carol).role == "member"


def test_settings_show_roles_and_the_right_buttons(alice, bob, alice_client, bob_client, carol_client, group):
    services.do_set_admin(alice, group, bob, True)
    owner_page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "Remove admin" in owner_page and "Make admin" in owner_page
    admin_page = bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert ">Admin<" in admin_page and "Make admin" not in admin_page and ">Remove<" in admin_page
    member_page = carol_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert ">Remove<" not in member_page


def test_an_admin_removes_members_but_not_the_owner_or_other_admins(alice, bob, carol, mallory, group):
    services.do_add_members(alice, group, [mallory])
    services.do_set_admin(alice, group, bob, True)
    services.do_set_admin(alice, group, mallory, True)
    from tests.conftest import client_for

    bob_client = client_for(bob)
    remove = reverse("rooms:remove_member", args=[group.pk])
    assert bob_client.post(remove, {"user_id": carol.pk}).status_code == 302
    assert not Membership.objects.filter(room=group, user=carol).exists()
    bob_client.post(remove, {"user_id": alice.pk})
    bob_client.post(remove, {"user_id": mallory.pk})
    assert Membership.objects.filter(room=group, user__in=[alice, mallory]).count() == 2


def test_an_admin_removes_others_messages_shown_as_removed_by_an_admin(alice, bob, carol, group):
    services.do_set_admin(alice, group, bob, True)
    message = services.do_post_message(membership(group, carol), "off topic").message
    from tests.conftest import client_for

    response = client_for(bob).post(reverse("rooms:delete_message", args=[group.pk, message.pk]))
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.removed_by == "admin" and message.is_deleted
    page = client_for(carol).get(group.get_absolute_url()).content.decode()
    assert "removed by an admin" in page and "off topic" not in page


@pytest.mark.parametrize("who", ["carol", "mallory"])
def test_members_and_outsiders_cannot_remove_others_messages(alice, bob, carol, mallory, group, who):
    from tests.conftest import client_for

    message = services.do_post_message(membership(group, bob), "mine").message
    client = client_for({"carol": carol, "mallory": mallory}[who])
    response = client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]))
    assert response.status_code in (403, 404)
    message.refresh_from_db()
    assert not message.is_deleted


def test_the_owner_removes_the_assistants_messages_too(alice, alice_client, group):
    reply = services.do_post_assistant_message(group.pk, persona="Assistant", body="wrong", state="done")
    alice_client.post(reverse("rooms:delete_message", args=[group.pk, reply.pk]))
    reply.refresh_from_db()
    assert reply.is_deleted and reply.removed_by == "admin"


def test_admins_may_change_an_owner_only_assistant(alice, bob, bob_client, carol_client, group):
    from assistant.services import do_update_assistant

    do_update_assistant(
        alice, group, name="Assistant", personality="", reply_mode="mention", members_can_edit=False
    )
    services.do_set_admin(alice, group, bob, True)
    data = {"name": "Helper", "reply_mode": "mention"}
    assert carol_client.post(reverse("assistant:settings", args=[group.pk]), data).status_code == 403
    assert bob_client.post(reverse("assistant:settings", args=[group.pk]), data).status_code == 302
