"""The rolling summary: a long room's older history, kept short, in this room only."""

import pytest
from django.urls import reverse

from assistant import runner, runs, services
from assistant.models import AssistantRun, AssistantSettings, ReplyMode
from assistant.private import do_add_memory, do_open_private_room
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import membership

SUMMARY = "The group agreed to meet in Lyon on 3 May; Bob books the train."


@pytest.fixture
def long_room(settings, alice, group):
    """A group on When mentioned whose history is longer than a reply reads at once."""
    settings.ASSISTANT_SUMMARY_AFTER_MESSAGES = 10
    settings.ASSISTANT_SUMMARY_KEEP_RECENT = 4
    services.do_update_assistant(alice, group, name="Assistant", personality="", reply_mode=ReplyMode.MENTION)
    member = membership(group, alice)
    for i in range(12):
        room_services.do_post_message(member, f"old fact number {i}")
    return group


def ask(room, user, body="@assistant what did we decide?"):
    room_services.do_post_message(membership(room, user), body)
    runner.run_pending()


def test_a_long_room_keeps_a_summary_and_replies_read_it_instead_of_old_messages(
    fake_openai, alice, long_room
):
    fake_openai.reply(SUMMARY)  # what the summary (and, here, the reply) says
    ask(long_room, alice)
    summary_run = AssistantRun.objects.get(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    assert summary_run.status == AssistantRun.Status.DONE and summary_run.prompt_tokens > 0
    assistant = AssistantSettings.objects.get(room=long_room)
    assert assistant.summary == SUMMARY
    # Everything but the newest four readable messages was folded in.
    newest = list(
        Message.objects.filter(room=long_room)
        .exclude(kind="system")
        .order_by("-seq")
        .values_list("seq", flat=True)
    )
    assert assistant.summary_through_seq == next(seq for seq in newest if seq < newest[3])
    summary_request = next(
        r for r in fake_openai.chat_requests() if "keep the memory" in r["messages"][0]["content"]
    )
    assert "old fact number 0" in summary_request["messages"][1]["content"]

    fake_openai.reply("We meet in Lyon.")
    ask(long_room, alice, "@assistant and when?")
    prompt = fake_openai.reply_requests()[-1]["messages"]
    assert prompt[1] == {
        "role": "system",
        "content": f"Summary of this room's earlier conversation:\n{SUMMARY}",
    }
    sent = str(prompt)
    assert "old fact number 0" not in sent and "old fact number 8" not in sent
    assert "@assistant and when?" in sent


def test_members_see_the_summary_in_settings_and_any_of_them_can_clear_it(alice, bob_client, group):
    AssistantSettings.objects.update_or_create(
        room=group, defaults={"summary": SUMMARY, "summary_through_seq": 5}
    )
    page = bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "What the assistant remembers about this room" in page and "Bob books the train" in page
    url = reverse("assistant:clear_summary", args=[group.pk])
    assert "Clear what the assistant remembers" in bob_client.get(url).content.decode()
    assert bob_client.post(url).status_code == 302
    assistant = AssistantSettings.objects.get(room=group)
    assert assistant.summary == "" and assistant.summary_through_seq == 5
    note = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).latest("seq")
    assert note.body == "Bob Builder cleared what the assistant remembers about this room"
    assert (
        "Bob books the train"
        not in bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    )


def test_only_members_can_clear_it(mallory_client, group):
    assert mallory_client.post(reverse("assistant:clear_summary", args=[group.pk])).status_code == 404


def test_a_summary_never_reaches_another_room(fake_openai, alice, bob, group, direct):
    AssistantSettings.objects.update_or_create(
        room=group, defaults={"summary": "The secret code is swordfish.", "summary_through_seq": 1}
    )
    ask(direct, bob, "@assistant hello")
    assert "swordfish" not in str(fake_openai.chat_requests())


def test_no_memories_in_a_summary_and_none_for_a_private_room(settings, fake_openai, alice, long_room):
    do_add_memory(alice, "my bank PIN is 4321")
    fake_openai.reply(SUMMARY)
    ask(long_room, alice)
    assert "4321" not in str(fake_openai.chat_requests())
    private = do_open_private_room(alice)
    member = membership(private, alice)
    fake_openai.clear()
    for i in range(12):
        room_services.do_post_message(member, f"private note {i}")
    runner.run_pending()
    assert not AssistantRun.objects.filter(room=private, kind=AssistantRun.Kind.SUMMARY).exists()


def test_a_summary_never_holds_up_a_reply(settings, alice, long_room):
    settings.OPENAI_API_KEY = "configured"
    AssistantRun.objects.create(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    summarising = runs.claim_next("worker-a")
    assert summarising is not None and summarising.kind == AssistantRun.Kind.SUMMARY
    room_services.do_post_message(membership(long_room, alice), "@assistant quick question")
    reply = runs.claim_next("worker-b")
    assert reply is not None and reply.kind == AssistantRun.Kind.REPLY and reply.room_id == long_room.pk
    # And a second summary waits for the first.
    AssistantRun.objects.create(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    assert runs.claim_next("worker-c") is None


def test_a_failed_summary_keeps_the_previous_one(fake_openai, alice, long_room):
    AssistantSettings.objects.filter(room=long_room).update(summary="Earlier summary.", summary_through_seq=1)
    fake_openai.queue(status=500, times=2)  # the reply and the summary, whichever asks first
    ask(long_room, alice)
    run = AssistantRun.objects.get(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    assert run.status == AssistantRun.Status.FAILED
    assert AssistantSettings.objects.get(room=long_room).summary == "Earlier summary."


def test_a_summary_cleared_while_it_is_being_made_stays_cleared(fake_openai, alice, bob_client, long_room):
    # The summary being made folds in the previous one: stored after a clear, it would
    # bring back what a member just asked the assistant to forget.
    AssistantSettings.objects.filter(room=long_room).update(
        summary="Bob's surprise party is on Friday.", summary_through_seq=1
    )
    AssistantRun.objects.create(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    claimed = runs.claim_next("here:1:abc")
    assert claimed is not None and claimed.kind == AssistantRun.Kind.SUMMARY
    assert "surprise party" in claimed.prompt[1]["content"]
    response = bob_client.post(reverse("assistant:clear_summary", args=[long_room.pk]))
    assert response.status_code in (200, 204, 302)
    from assistant.summary import apply_summary

    assert apply_summary(claimed, "Bob's surprise party is on Friday; they meet in Lyon.", None) is False
    assistant = AssistantSettings.objects.get(room=long_room)
    assert assistant.summary == ""
    assert AssistantRun.objects.get(pk=claimed.run_id).status == AssistantRun.Status.CANCELLED


def test_a_deleted_message_leaves_the_summary(fake_openai, alice, long_room):
    # A message folded into the summary and then deleted must not live on in it (shown to
    # every member in settings, sent with every reply): the summary is made again, from the
    # messages still there, and one being made meanwhile is dropped.
    fake_openai.reply("Alice said fact three.")
    ask(long_room, alice)
    assistant = AssistantSettings.objects.get(room=long_room)
    assert assistant.summary and assistant.summary_through_seq
    covered = Message.objects.get(room=long_room, body="old fact number 3")
    assert covered.seq <= assistant.summary_through_seq
    AssistantRun.objects.create(room=long_room, kind=AssistantRun.Kind.SUMMARY)
    room_services.do_delete_message(alice, covered)
    assistant.refresh_from_db()
    assert assistant.summary == "" and assistant.summary_through_seq == 0
    assert not AssistantRun.objects.filter(
        room=long_room, kind=AssistantRun.Kind.SUMMARY, status__in=("queued", "running")
    ).exists()
    # The next reply reads the remaining old messages raw again (and queues a new summary).
    fake_openai.reply("Noted.")
    ask(long_room, alice, "@assistant what now?")
    prompt = str(fake_openai.reply_requests()[-1]["messages"])
    assert "old fact number 2" in prompt and "old fact number 3" not in prompt


def test_deleting_a_message_the_summary_does_not_cover_keeps_it(fake_openai, alice, long_room):
    fake_openai.reply(SUMMARY)
    ask(long_room, alice)
    assistant = AssistantSettings.objects.get(room=long_room)
    newest = Message.objects.filter(room=long_room, seq__gt=assistant.summary_through_seq).exclude(
        kind="system"
    )
    room_services.do_delete_message(alice, newest.filter(author=alice).latest("seq"))
    assistant.refresh_from_db()
    assert assistant.summary == SUMMARY
