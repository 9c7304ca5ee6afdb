"""Each person's private assistant room, their memories, and sharing answers out of it."""

import pytest
from django.urls import reverse

from assistant import private, runner
from assistant.models import AssistantRun, Memory
from rooms import services as services_rooms
from rooms.models import Message, Room
from tests.conftest import make_user, membership, post


def open_private(client):
    response = client.get(reverse("assistant:mine"))
    assert response.status_code == 302
    return Room.objects.get(pk=int(response["Location"].strip("/").split("/")[-1]))


def test_my_assistant_is_a_private_room_pinned_in_the_sidebar(alice_client, alice, group):
    room = open_private(alice_client)
    assert room.is_private and list(room.memberships.values_list("user", flat=True)) == [alice.pk]
    assert open_private(alice_client) == room  # one per person
    page = alice_client.get(reverse("rooms:index")).content.decode()
    pinned = page[page.index('id="pinned-rooms"') : page.index('id="room-list"')]
    assert room.get_absolute_url() in pinned and "My assistant" in pinned


def test_before_first_use_the_sidebar_links_to_it(alice_client, group):
    page = alice_client.get(reverse("rooms:index")).content.decode()
    assert reverse("assistant:mine") in page


def test_nobody_else_can_open_my_assistant_room(alice_client, bob_client):
    room = open_private(alice_client)
    assert bob_client.get(room.get_absolute_url()).status_code == 404
    assert post(bob_client, room, "hi").status_code == 404


def test_it_answers_every_message_in_the_private_room(fake_openai, alice_client):
    room = open_private(alice_client)
    post(alice_client, room, "what is a good name for a cat?")
    runner.run_pending()
    reply = Message.objects.get(room=room, kind="assistant")
    assert reply.state == "done" and reply.reply_to is None


def test_remember_that_saves_a_memory_and_says_so(fake_openai, alice, alice_client):
    room = open_private(alice_client)
    post(alice_client, room, "Remember that I am vegetarian")
    assert list(Memory.objects.filter(user=alice).values_list("text", flat=True)) == ["I am vegetarian"]
    assert Message.objects.filter(room=room, kind="system", body="Memory saved: I am vegetarian").exists()
    runner.run_pending()
    (request,) = fake_openai.chat_requests()
    assert "- I am vegetarian" in request["messages"][0]["content"]


def test_memories_are_used_only_in_their_owners_private_room(fake_openai, alice, bob, alice_client, group):
    private.do_add_memory(alice, "My bank PIN hint is 'blue horse'")
    private.do_add_memory(bob, "Bob is allergic to cats")
    from rooms.services import do_post_message

    do_post_message(membership(group, alice), "@assistant plan our dinner")
    runner.run_pending()
    shared = fake_openai.chat_requests()[-1]
    assert "blue horse" not in str(shared) and "allergic" not in str(shared)
    assert "blue horse" not in str(AssistantRun.objects.get(room=group).prompt)

    room = open_private(alice_client)
    post(alice_client, room, "what do you remember?")
    runner.run_pending()
    in_private = fake_openai.chat_requests()[-1]
    assert "blue horse" in str(in_private) and "allergic" not in str(in_private)


def test_the_memories_page_adds_edits_and_deletes(alice, alice_client):
    url = reverse("assistant:memories")
    assert alice_client.post(url, {"text": "I live in Lyon"}).status_code == 302
    memory = Memory.objects.get(user=alice)
    assert "I live in Lyon" in alice_client.get(url).content.decode()
    edit = reverse("assistant:edit_memory", args=[memory.pk])
    assert alice_client.post(edit, {"text": "I live in Paris"}).status_code == 302
    memory.refresh_from_db()
    assert memory.text == "I live in Paris"
    assert alice_client.post(reverse("assistant:delete_memory", args=[memory.pk])).status_code == 302
    assert not Memory.objects.exists()


@pytest.mark.parametrize(("text", "error"), [("", "This field is required."), ("x" * 501, "at most 500")])
def test_bad_memories_are_refused(alice_client, text, error):
    response = alice_client.post(reverse("assistant:memories"), {"text": text})
    assert response.status_code == 422 and error in response.content.decode()


def test_other_peoples_memories_are_out_of_reach(alice, bob_client):
    memory = private.do_add_memory(alice, "secret")
    assert bob_client.get(reverse("assistant:edit_memory", args=[memory.pk])).status_code == 404
    assert bob_client.post(reverse("assistant:delete_memory", args=[memory.pk])).status_code == 404
    assert "secret" not in bob_client.get(reverse("assistant:memories")).content.decode()
    assert Memory.objects.filter(pk=memory.pk).exists()


def test_share_posts_the_question_and_answer_as_a_card(fake_openai, alice_client, group):
    fake_openai.reply("Try **Lyon** in spring.")
    room = open_private(alice_client)
    post(alice_client, room, "where should we go?")
    runner.run_pending()
    answer = Message.objects.get(room=room, kind="assistant")
    url = reverse("assistant:share", args=[room.pk, answer.pk])
    page = alice_client.get(url).content.decode()
    assert "Trip planning" in page and "where should we go?" in page
    response = alice_client.post(url, {"room": group.pk, "note": "What do you think?"})
    assert response.status_code == 302
    shared = Message.objects.filter(room=group, kind="text").latest("seq")
    assert shared.author.username == "alice"
    assert shared.body.startswith("What do you think?")
    assert "<blockquote>" in shared.html and "<strong>Lyon</strong>" in shared.html
    assert "where should we go?" in shared.body


def test_share_only_to_my_rooms_and_only_from_my_private_room(fake_openai, alice_client, bob, carol, group):
    from rooms.services import do_open_direct_room

    others = do_open_direct_room(bob, carol)
    room = open_private(alice_client)
    post(alice_client, room, "hello")
    runner.run_pending()
    answer = Message.objects.get(room=room, kind="assistant")
    url = reverse("assistant:share", args=[room.pk, answer.pk])
    response = alice_client.post(url, {"room": others.pk})
    assert response.status_code == 422 and "Choose one of your conversations" in response.content.decode()
    assert not Message.objects.filter(room=others).exists()
    group_message = Message.objects.filter(room=group).first()
    assert alice_client.get(reverse("assistant:share", args=[group.pk, group_message.pk])).status_code == 404


def test_the_admin_lists_runs_with_their_usage_and_failures(fake_openai, admin_client, alice_client, group):
    fake_openai.queue(status=500)
    post(alice_client, group, "@assistant first")
    runner.run_pending()
    post(alice_client, group, "@assistant second")
    runner.run_pending()
    url = reverse("admin:assistant_assistantrun_changelist")
    page = admin_client.get(url).content.decode()
    assert "server_error" in page and "gpt-4o-mini" in page
    failed = admin_client.get(url, {"outcome": "failed"}).content.decode()
    assert failed.count('class="field-id"') == 1
    run = AssistantRun.objects.filter(status="done").get()
    assert admin_client.get(reverse("admin:assistant_assistantrun_change", args=[run.pk])).status_code == 200


def test_only_remember_that_saves_a_memory(fake_openai, alice, alice_client):
    room = open_private(alice_client)
    post(alice_client, room, "Remember when we went to Paris?")
    assert not Memory.objects.exists()
    post(alice_client, room, "remember that " + "x" * 600)
    assert not Memory.objects.exists()
    assert Message.objects.filter(
        room=room, body__startswith="Not saved as a memory: A memory is at most"
    ).exists()
    assert Message.objects.filter(
        room=room, body__startswith="remember that xxx"
    ).exists()  # the message stays


def test_unfinished_answers_and_declined_rooms_cannot_be_shared(
    fake_openai, alice, alice_client, mallory_client
):
    from rooms.models import Membership

    room = open_private(alice_client)
    post(alice_client, room, "hello")
    runner.run_pending()
    answer = Message.objects.get(room=room, kind="assistant")
    mallory_client.post(reverse("rooms:open_direct", args=["alice"]))
    declined = Room.objects.get(kind="direct")
    Membership.objects.filter(room=declined, user=alice).update(request="declined")
    url = reverse("assistant:share", args=[room.pk, answer.pk])
    for bad in (declined.pk, 10**30, "x"):
        response = alice_client.post(url, {"room": bad})
        assert response.status_code == 422 and "Choose one of your conversations" in response.content.decode()
    assert not Message.objects.filter(room=declined).exists()
    Message.objects.filter(pk=answer.pk).update(state="streaming")
    assert alice_client.get(url).status_code == 404


def test_private_prompts_are_not_shown_to_staff(fake_openai, admin_client, alice_client, carol_client, group):
    from assistant.private import do_add_memory

    alice = User_from(alice_client)
    do_add_memory(alice, "my secret")
    room = open_private(alice_client)
    post(alice_client, room, "hello")
    runner.run_pending()
    run = AssistantRun.objects.get()
    page = admin_client.get(reverse("admin:assistant_assistantrun_change", args=[run.pk])).content.decode()
    assert "my secret" not in page and "a private conversation: not shown" in page
    answer = Message.objects.get(room=room, kind="assistant")
    alice_client.post(reverse("rooms:report", args=[room.pk, answer.pk]), {"reason": "other"})
    from rooms.models import Report

    assert "my secret" not in str(Report.objects.get().snapshot)


def User_from(client):
    from django.contrib.auth import get_user

    return get_user(client)


def test_the_memories_page_says_which_memories_are_past_the_limit(fake_openai, alice, alice_client, settings):
    import datetime as dt

    from django.utils import timezone

    from assistant.prompt import MEMORIES_MAX

    start = timezone.now() - dt.timedelta(days=1)
    Memory.objects.bulk_create(
        Memory(user=alice, text=f"fact number {i}", updated_at=start + dt.timedelta(minutes=i))
        for i in range(MEMORIES_MAX + 1)
    )
    page = alice_client.get(reverse("assistant:memories")).content.decode()
    assert f"reads the {MEMORIES_MAX} most recently added or edited memories" in page
    assert page.count("(not used)") == 1
    assert 'fact number 0 <small class="memory__unused">(not used)</small>' in page

    room = open_private(alice_client)
    post(alice_client, room, "what do you know?")
    runner.run_pending()
    system = fake_openai.chat_requests()[-1]["messages"][0]["content"]
    assert f"fact number {MEMORIES_MAX}\n" in system + "\n" and "fact number 0\n" not in system + "\n"


def test_the_memories_page_has_no_limit_note_below_the_limit(alice, alice_client):
    private.do_add_memory(alice, "I like tea")
    page = alice_client.get(reverse("assistant:memories")).content.decode()
    assert "(not used)" not in page and "most recently added" not in page


def test_the_share_page_costs_the_same_with_30_direct_rooms_and_30_groups(
    fake_openai, alice, alice_client, settings, django_assert_max_num_queries
):
    """Every conversation is a target, with its title, from one query (shared with the sidebar)."""
    settings.RATE_STRANGERS_PER_DAY = 0
    for i in range(30):
        services_rooms.do_open_direct_room(alice, make_user(f"friend{i}"))
        services_rooms.do_create_group(alice, f"Group {i}", [])
    room = open_private(alice_client)
    post(alice_client, room, "where should we go?")
    runner.run_pending()
    answer = Message.objects.get(room=room, kind="assistant")
    url = reverse("assistant:share", args=[room.pk, answer.pk])
    # The user, my membership of the private room, the answer, the run naming its question,
    # the sidebar's rooms (the targets), their direct partners, and the people I blocked.
    with django_assert_max_num_queries(7):
        page = alice_client.get(url).content.decode()
    assert page.count("<option ") == 60
    assert ">friend29<" in page and ">Group 29 (group)<" in page
