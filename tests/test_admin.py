"""The Django admin lists users, rooms, memberships and messages, searchably."""

import pytest
from django.urls import reverse

from rooms import services
from tests.conftest import client_for, make_user, membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(db):
    staff = make_user("moderator1")
    staff.is_staff = staff.is_superuser = True
    staff.save()
    return client_for(staff)


def test_admin_lists_users_with_their_avatar(admin_client, alice):
    body = admin_client.get(reverse("admin:accounts_user_changelist")).content.decode()
    assert "alice" in body and "Alice Liddell" in body and ">AL<" in body


def test_admin_searches_messages_by_text_author_and_room(admin_client, group, alice, bob):
    services.do_post_message(membership(group, alice), "the secret meeting point")
    services.do_post_message(membership(group, bob), "something else")
    url = reverse("admin:rooms_message_changelist")
    assert "the secret meeting point" in admin_client.get(url, {"q": "meeting"}).content.decode()
    by_author = admin_client.get(url, {"q": "bob"}).content.decode()
    assert "something else" in by_author and "the secret meeting point" not in by_author
    assert "the secret meeting point" in admin_client.get(url, {"q": "Trip planning"}).content.decode()


@pytest.mark.parametrize(
    "name",
    ["admin:rooms_room_changelist", "admin:rooms_membership_changelist", "admin:rooms_message_changelist"],
)
def test_admin_pages_load(admin_client, group, name):
    assert admin_client.get(reverse(name)).status_code == 200


def test_admin_room_search_finds_by_title(admin_client, group):
    assert (
        "Trip planning"
        in admin_client.get(reverse("admin:rooms_room_changelist"), {"q": "trip"}).content.decode()
    )


def test_the_admin_is_for_staff_only(alice_client):
    response = alice_client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_rooms_and_messages_are_read_only_in_the_admin(admin_client, group, alice):
    """Changes go through the services (live updates, audit log), never the admin forms."""
    message = services.do_post_message(membership(group, alice), "as it was").message
    url = reverse("admin:rooms_message_change", args=[message.pk])
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"body": "rewritten"})
    admin_client.post(reverse("admin:rooms_message_delete", args=[message.pk]), {"post": "yes"})
    message.refresh_from_db()
    assert message.body == "as it was"
    admin_client.post(reverse("admin:rooms_room_delete", args=[group.pk]), {"post": "yes"})
    assert type(group).objects.filter(pk=group.pk).exists()


@pytest.fixture
def private_chat(alice):
    """alice's conversation with her own assistant, and a memory it keeps."""
    from assistant.models import Memory
    from assistant.private import do_open_private_room

    room = do_open_private_room(alice)
    message = services.do_post_message(membership(room, alice), "my private diagnosis").message
    Memory.objects.create(user=alice, text="my bank PIN is 4242")
    return message


def test_the_message_admin_leaves_out_private_assistant_conversations(
    admin_client, group, alice, private_chat
):
    """Moderators see shared rooms; what someone tells their own assistant stays theirs."""
    services.do_post_message(membership(group, alice), "hello group")
    url = reverse("admin:rooms_message_changelist")
    listing = admin_client.get(url).content.decode()
    assert "hello group" in listing and "my private diagnosis" not in listing
    for query in ("diagnosis", "alice", "My assistant", "Alice Liddell"):
        assert "my private diagnosis" not in admin_client.get(url, {"q": query}).content.decode()
    filtered = admin_client.get(url, {"room__id__exact": private_chat.room_id}, follow=True)
    assert "my private diagnosis" not in filtered.content.decode()
    detail = admin_client.get(reverse("admin:rooms_message_change", args=[private_chat.pk]), follow=True)
    assert "my private diagnosis" not in detail.content.decode()


def test_no_admin_page_shows_a_private_conversation_or_a_memory(admin_client, alice, private_chat):
    from assistant.models import Memory

    memory = Memory.objects.get(user=alice)
    pages = [
        reverse("admin:rooms_room_change", args=[private_chat.room_id]),
        reverse("admin:rooms_room_changelist"),
        reverse("admin:assistant_memory_changelist"),
        reverse("admin:assistant_memory_change", args=[memory.pk]),
        reverse("admin:assistant_memory_delete", args=[memory.pk]),
    ]
    # Accounts are deleted with the privacy app's action (tests/test_privacy.py), never by
    # Django's delete page, which would list everything that goes with them.
    assert admin_client.get(reverse("admin:accounts_user_delete", args=[alice.pk])).status_code == 403
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert "my private diagnosis" not in body, page
        assert "4242" not in body and "bank PIN" not in body, page


def test_a_memory_is_named_without_its_text(alice):
    from assistant.models import Memory

    memory = Memory.objects.create(user=alice, text="my bank PIN is 4242")
    assert "4242" not in str(memory) and "alice" in str(memory)
