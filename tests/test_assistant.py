"""The assistant in a room: its settings, when it replies, what it is told, how runs end."""

import asyncio
import datetime as dt
import re
import threading

import pytest
from django.urls import reverse
from django.utils import timezone

from assistant import runner, runs, services
from assistant.models import AssistantRun, ReplyMode
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import HTMX, membership, post
from tests.fake_openai import Behaviour


def set_assistant(room, user, *, name="Assistant", personality="", mode=ReplyMode.MENTION):
    return services.do_update_assistant(user, room, name=name, personality=personality, reply_mode=mode)


def replies(room):
    return list(Message.objects.filter(room=room, kind=Message.Kind.ASSISTANT).order_by("seq"))


# The Assistant panel


def test_room_settings_show_the_assistant_panel_with_its_defaults(alice_client, group):
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert 'id="assistant-panel"' in page
    assert 'value="Assistant"' in page
    # A new group joins in by itself (tests/test_assistant_auto.py); existing ones kept theirs.
    assert re.search(r"<input type=\"radio\" name=\"reply_mode\" value=\"auto\"[^>]* checked>", page)


def test_renaming_the_assistant_tells_the_room(alice_client, group):
    response = alice_client.post(
        reverse("assistant:settings", args=[group.pk]),
        {"name": "Planner", "personality": "A terse travel planner.", "reply_mode": "always"},
    )
    assert response.status_code == 302
    notes = list(Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).values_list("body", flat=True))
    assert "Alice Liddell renamed the assistant to Planner" in notes
    assert "Alice Liddell changed the assistant’s personality" in notes
    assert "Alice Liddell set the assistant to reply to every message" in notes
    assert group.assistant.name == "Planner"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "", "reply_mode": "mention"}, "This field is required."),
        ({"name": "x" * 41, "reply_mode": "mention"}, "at most 40 characters"),
        ({"name": "Bot", "personality": "x" * 2001, "reply_mode": "mention"}, "at most 2,000 characters"),
        ({"name": "Bot", "reply_mode": "sometimes"}, "Select a valid choice"),
        ({"name": "@Bot", "reply_mode": "mention"}, "cannot contain"),
    ],
)
def test_bad_assistant_settings_are_refused_with_a_message(alice_client, group, data, error):
    response = alice_client.post(reverse("assistant:settings", args=[group.pk]), data)
    assert response.status_code == 422
    assert error in response.content.decode()
    assert not Message.objects.filter(
        room=group, kind=Message.Kind.SYSTEM, body__contains="assistant"
    ).exists()


def test_the_owner_can_make_the_assistant_owner_only(alice_client, bob_client, group):
    alice_client.post(
        reverse("assistant:settings", args=[group.pk]),
        {"name": "Assistant", "reply_mode": "mention", "members_can_edit": ""},
    )
    response = bob_client.post(
        reverse("assistant:settings", args=[group.pk]), {"name": "Hacked", "reply_mode": "always"}
    )
    assert response.status_code == 403
    assert (
        "Only the group’s owner and admins can change the assistant here."
        in bob_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    )


def test_a_member_cannot_take_the_owners_switch(bob_client, group):
    bob_client.post(
        reverse("assistant:settings", args=[group.pk]),
        {"name": "Assistant", "reply_mode": "mention", "members_can_edit": ""},
    )
    group.refresh_from_db()
    assert services.settings_for(group).members_can_edit is True


def test_non_members_cannot_see_or_change_the_assistant(mallory_client, group):
    url = reverse("assistant:settings", args=[group.pk])
    assert mallory_client.get(url).status_code == 404
    assert mallory_client.post(url, {"name": "Mine", "reply_mode": "always"}).status_code == 404


def test_the_panel_says_when_the_assistant_is_not_configured(alice_client, group):
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert "The assistant is not configured on this server" in page


# When it replies


@pytest.mark.parametrize(
    ("mode", "body", "replies_expected"),
    [
        (ReplyMode.ALWAYS, "what should we pack?", True),
        (ReplyMode.ALWAYS, "@Planner what should we pack?", True),
        (ReplyMode.MENTION, "what should we pack?", False),
        (ReplyMode.MENTION, "@Planner what should we pack?", True),
        (ReplyMode.MENTION, "hey @planner, thoughts?", True),
        (ReplyMode.MENTION, "@assistant thoughts?", True),
        (ReplyMode.MENTION, "@Assistant thoughts?", True),
        (ReplyMode.MENTION, "mail me at me@planner.com", False),
        (ReplyMode.MENTION, "@Plannerx is not its name", False),
        (ReplyMode.OFF, "@Planner what should we pack?", False),
        (ReplyMode.OFF, "what should we pack?", False),
    ],
)
def test_reply_modes(settings, alice, bob_client, group, mode, body, replies_expected):
    settings.OPENAI_API_KEY = "configured"
    set_assistant(group, alice, name="Planner", mode=mode)
    post(bob_client, group, body)
    assert AssistantRun.objects.filter(room=group, status="queued").exists() is replies_expected


def test_after_a_rename_only_the_new_name_and_assistant_work(settings, alice, bob_client, group):
    settings.OPENAI_API_KEY = "configured"
    set_assistant(group, alice, name="Planner")
    set_assistant(group, alice, name="Guide")
    post(bob_client, group, "@Planner are you there?")
    assert not AssistantRun.objects.exists()
    post(bob_client, group, "@guide are you there?")
    assert AssistantRun.objects.filter(room=group).count() == 1


def test_system_messages_never_trigger_it(settings, alice, group):
    settings.OPENAI_API_KEY = "configured"
    set_assistant(group, alice, mode=ReplyMode.ALWAYS)
    room_services.do_rename_room(alice, group, "New title")
    assert not AssistantRun.objects.exists()


def test_messages_arriving_while_it_waits_are_answered_once(settings, alice, bob, carol, group):
    settings.OPENAI_API_KEY = "configured"
    set_assistant(group, alice, mode=ReplyMode.ALWAYS)
    room_services.do_post_message(membership(group, alice), "first")
    claimed = runs.claim_next("test-worker")  # the first reply is now running
    room_services.do_post_message(membership(group, bob), "second")
    room_services.do_post_message(membership(group, carol), "third")
    queued = AssistantRun.objects.filter(room=group, status="queued")
    assert queued.count() == 1
    # It answers the latest message, and stays counted against whoever asked first.
    assert queued.get().trigger.body == "third" and queued.get().requested_by == bob
    # One room's runs go in order: the queued one waits for the running one.
    assert runs.claim_next("test-worker") is None
    assert claimed is not None


def test_a_mention_without_a_key_says_it_is_not_configured_and_queues_nothing(alice_client, group):
    post(alice_client, group, "@assistant hello?")
    (reply,) = replies(group)
    assert reply.state == Message.State.FAILED
    assert "not configured" in reply.note
    assert not AssistantRun.objects.filter(status__in=["queued", "running"]).exists()
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "The assistant is not configured on this server yet" in page


def test_always_mode_without_a_key_stays_quiet(alice, alice_client, group):
    set_assistant(group, alice, mode=ReplyMode.ALWAYS)
    post(alice_client, group, "hello everyone")
    assert replies(group) == []


# A reply from start to end


def test_a_mention_gets_a_streamed_reply_stored_as_markdown(fake_openai, alice, bob_client, group):
    set_assistant(group, alice, name="Planner", personality="Answers in French.")
    fake_openai.reply("**Bonjour** Bob, take a coat.")
    post(bob_client, group, "@Planner what should I pack?")
    runner.run_pending()

    (reply,) = replies(group)
    assert reply.state == Message.State.DONE
    assert reply.persona == "Planner"
    assert reply.body == "**Bonjour** Bob, take a coat."
    assert "<strong>Bonjour</strong>" in reply.html
    assert reply.reply_to.body == "@Planner what should I pack?"

    run = AssistantRun.objects.get()
    assert run.status == AssistantRun.Status.DONE
    assert run.requested_by.username == "bob"
    assert run.model == "gpt-4o-mini"
    assert run.completion_tokens > 0 and run.prompt_tokens > 0
    assert run.time_to_first_token is not None and run.total_time >= run.time_to_first_token

    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "message--assistant" in page and "badge--ai" in page and "<strong>Bonjour</strong>" in page


def test_the_prompt_has_the_room_its_people_and_who_asked(fake_openai, alice, bob_client, group):
    set_assistant(group, alice, name="Planner", personality="A terse travel planner.")
    room_services.do_post_message(membership(group, alice), "We leave on Friday.")
    post(bob_client, group, "@Planner what should I pack?")
    runner.run_pending()

    (request,) = fake_openai.chat_requests()
    system, *history = request["messages"]
    assert system["role"] == "system"
    assert "You are Planner" in system["content"]
    assert "Trip planning" in system["content"]
    assert "A terse travel planner." in system["content"]
    assert "Bob Builder is waiting" in system["content"]
    assert history == [
        {"role": "user", "content": "Alice Liddell: We leave on Friday."},
        {"role": "user", "content": "Bob Builder: @Planner what should I pack?"},
    ]
    assert request["stream"] is True


def test_the_history_sent_stays_within_the_token_budget(settings, fake_openai, alice, group):
    set_assistant(group, alice)  # when mentioned: no decisions in between
    settings.ASSISTANT_CONTEXT_TOKENS = 400
    member = membership(group, alice)
    for i in range(40):
        room_services.do_post_message(member, f"message number {i} " + "words " * 20)
    room_services.do_post_message(member, "@assistant summarise please")
    runner.run_pending()
    (request,) = fake_openai.chat_requests()
    sent = request["messages"]
    assert sent[-1]["content"] == "Alice Liddell: @assistant summarise please"
    assert 2 < len(sent) < 20
    assert "message number 39" in sent[-2]["content"]
    assert not any("message number 0 " in m["content"] for m in sent)


def test_nothing_from_other_rooms_goes_into_the_prompt(fake_openai, alice, bob, group, direct):
    room_services.do_post_message(membership(direct, alice), "the secret in our direct room")
    room_services.do_post_message(membership(group, bob), "@assistant hi")
    runner.run_pending()
    assert "the secret" not in str(fake_openai.chat_requests())


def test_its_own_earlier_answers_go_in_as_assistant_turns(fake_openai, alice, group):
    member = membership(group, alice)
    fake_openai.reply("Paris.")
    room_services.do_post_message(member, "@assistant capital of France?")
    runner.run_pending()
    room_services.do_post_message(member, "@assistant and of Italy?")
    runner.run_pending()
    second = fake_openai.chat_requests()[1]["messages"]
    assert {"role": "assistant", "content": "Paris."} in second


# When things go wrong


@pytest.mark.parametrize(
    ("behaviour", "code", "note"),
    [
        (Behaviour(status=429, retry_after=0.01), "rate_limited", "rate limiting"),
        (Behaviour(status=500), "server_error", "had an error (500)"),
        (Behaviour(status=400), "refused", "refused this request"),
        (Behaviour(hang=True), "timeout", "did not answer within 2 seconds"),
        (Behaviour(text="one two three four five", cut_after=2), "connection", "Could not reach"),
    ],
)
def test_failures_show_a_clear_error_with_retry(
    fake_openai, alice, alice_client, group, behaviour, code, note
):
    fake_openai.queue(behaviour)
    post(alice_client, group, "@assistant hello")
    runner.run_pending()
    run = AssistantRun.objects.get()
    assert run.status == AssistantRun.Status.FAILED and run.error_code == code
    (reply,) = replies(group)
    assert reply.state == Message.State.FAILED and note in reply.note
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert note in page and reverse("assistant:retry", args=[group.pk, reply.pk]) in page
    # The room keeps working.
    assert post(alice_client, group, "still here").status_code == 302


def test_a_cut_stream_keeps_the_text_that_arrived(fake_openai, alice, group):
    fake_openai.queue(text="one two three four five", cut_after=3)
    room_services.do_post_message(membership(group, alice), "@assistant count")
    runner.run_pending()
    (reply,) = replies(group)
    assert reply.body == "one two three"
    assert reply.state == Message.State.FAILED


def test_retry_answers_in_the_same_message(fake_openai, alice, bob_client, group):
    fake_openai.queue(status=500)
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    runner.run_pending()
    (failed,) = replies(group)
    response = bob_client.post(reverse("assistant:retry", args=[group.pk, failed.pk]), **HTMX)
    assert response.status_code == 204
    failed.refresh_from_db()
    assert failed.state == Message.State.STREAMING
    runner.run_pending()
    (reply,) = replies(group)
    assert reply.pk == failed.pk and reply.state == Message.State.DONE and reply.note == ""
    assert reply.body == "Hello from the fake model."
    # Pressing Retry again on a reply that worked does nothing.
    bob_client.post(reverse("assistant:retry", args=[group.pk, failed.pk]), **HTMX)
    assert AssistantRun.objects.count() == 2


def test_stop_and_retry_need_membership(fake_openai, alice, mallory_client, group):
    fake_openai.queue(status=500)
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    runner.run_pending()
    (failed,) = replies(group)
    assert mallory_client.post(reverse("assistant:retry", args=[group.pk, failed.pk])).status_code == 404
    assert mallory_client.post(reverse("assistant:stop", args=[group.pk, failed.pk])).status_code == 404


def test_stopping_a_queued_run_cancels_it(settings, alice_client, alice, group):
    settings.OPENAI_API_KEY = "configured"
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    run = AssistantRun.objects.get()
    action = services.do_stop_run(alice, run)
    assert action.changed and AssistantRun.objects.get().status == AssistantRun.Status.CANCELLED


def test_the_daily_limit_answers_with_a_clear_message(settings, fake_openai, alice, alice_client, group):
    settings.ASSISTANT_DAILY_RUNS = 2
    for _ in range(2):
        post(alice_client, group, "@assistant hi")
        runner.run_pending()
    post(alice_client, group, "@assistant one more?")
    last = replies(group)[-1]
    assert last.state == Message.State.FAILED
    assert "You have used today’s 2 assistant requests" in last.note
    assert "resets at midnight UTC" in last.note
    assert len(fake_openai.chat_requests()) == 2
    # Refusals do not count, and other people have their own allowance.
    assert services.runs_today(alice) == 2


def test_yesterdays_runs_do_not_count(settings, alice, group):
    settings.ASSISTANT_DAILY_RUNS = 1
    AssistantRun.objects.create(
        room=group, requested_by=alice, status="done", created_at=timezone.now() - dt.timedelta(days=1)
    )
    assert services.runs_today(alice) == 0


# Runs that outlive their process


def _running_run(room, user, *, attempts=1, heartbeat_age=120):
    reply = room_services.do_post_assistant_message(room.pk, persona="Assistant", body="half an ans")
    stale = timezone.now() - dt.timedelta(seconds=heartbeat_age)
    return AssistantRun.objects.create(
        room=room,
        requested_by=user,
        status="running",
        reply=reply,
        attempts=attempts,
        started_at=stale,
        heartbeat_at=stale,
        worker="gone:1:abc",
    )


def test_a_run_orphaned_by_a_restart_runs_once_more(fake_openai, alice, group):
    run = _running_run(group, alice, attempts=1)
    assert runs.recover_orphans() == 1
    run.refresh_from_db()
    assert run.status == AssistantRun.Status.QUEUED
    runner.run_pending()
    run.refresh_from_db()
    assert run.status == AssistantRun.Status.DONE and run.attempts == 2
    assert run.reply.body == "Hello from the fake model." and len(replies(group)) == 1


def test_a_run_orphaned_twice_fails_with_a_note(alice, group):
    run = _running_run(group, alice, attempts=2)
    runs.recover_orphans()
    run.refresh_from_db()
    assert run.status == AssistantRun.Status.FAILED and run.error_code == "interrupted"
    assert run.reply.state == Message.State.FAILED
    assert "interrupted by a server restart" in run.reply.note


def test_a_live_run_elsewhere_is_left_alone(alice, group):
    run = _running_run(group, alice, heartbeat_age=1)
    assert runs.recover_orphans() == 0
    run.refresh_from_db()
    assert run.status == AssistantRun.Status.RUNNING


def test_with_one_process_every_running_run_is_an_orphan(alice, group):
    _running_run(group, alice, heartbeat_age=1)
    assert runs.recover_orphans(everything=True) == 1


# Other rooms are not slowed


async def _wait_for(check, timeout=5.0):
    from channels.db import database_sync_to_async

    for _ in range(int(timeout / 0.02)):
        if await database_sync_to_async(check)():
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.django_db(transaction=True)
async def test_two_rooms_stream_at_once(settings, fake_openai, alice, bob, group, direct):
    """A slow reply in one room does not hold up a reply in another."""
    from channels.db import database_sync_to_async

    post_as = database_sync_to_async(
        lambda user, room, body: room_services.do_post_message(membership(room, user), body)
    )
    gate = threading.Event()
    fake_openai.queue(text="slow answer here", gate=gate)
    worker = runner.Runner()
    runner.install(worker)
    serving = asyncio.ensure_future(worker.serve())
    try:
        await post_as(alice, group, "@assistant slow")
        await asyncio.to_thread(fake_openai.wait_for_requests, 1)
        await post_as(bob, direct, "@assistant quick")
        assert await _wait_for(lambda: AssistantRun.objects.filter(room=direct, status="done").exists())
        assert (
            await database_sync_to_async(lambda: AssistantRun.objects.get(room=group).status)() == "running"
        )
        gate.set()
        assert await _wait_for(lambda: AssistantRun.objects.filter(room=group, status="done").exists())
    finally:
        gate.set()
        runner.install(None)
        serving.cancel()


@pytest.mark.django_db(transaction=True)
async def test_a_process_streams_at_most_its_share_of_runs_at_once(
    settings, fake_openai, alice, bob, group, direct
):
    """With room for one run, a second room's reply waits its turn instead of piling on."""
    from channels.db import database_sync_to_async

    post_as = database_sync_to_async(
        lambda user, room, body: room_services.do_post_message(membership(room, user), body)
    )
    gate = threading.Event()
    fake_openai.queue(text="held open", gate=gate)
    worker = runner.Runner(concurrency=1)
    runner.install(worker)
    serving = asyncio.ensure_future(worker.serve())
    try:
        await post_as(alice, group, "@assistant first")
        await asyncio.to_thread(fake_openai.wait_for_requests, 1)
        await post_as(bob, direct, "@assistant second")
        await asyncio.sleep(0.3)
        statuses = await database_sync_to_async(
            lambda: dict(AssistantRun.objects.values_list("room_id", "status"))
        )()
        assert statuses == {group.pk: "running", direct.pk: "queued"}
        gate.set()
        assert await _wait_for(lambda: AssistantRun.objects.filter(status="done").count() == 2)
    finally:
        gate.set()
        runner.install(None)
        serving.cancel()


# Found in review


def test_a_run_that_cannot_be_prepared_fails_alone(fake_openai, alice, bob, group, direct, monkeypatch):
    from assistant import prompt

    room_services.do_post_message(membership(group, alice), "@assistant first")
    room_services.do_post_message(membership(direct, bob), "@assistant second")
    calls = []
    real = prompt.build_chat_prompt

    def broken_once(run, assistant, **kwargs):
        calls.append(run.pk)
        if len(calls) == 1:
            raise FileNotFoundError("the trigger's image is gone")
        return real(run, assistant, **kwargs)

    monkeypatch.setattr(runs, "build_chat_prompt", broken_once)
    runner.run_pending()
    assert dict(AssistantRun.objects.values_list("room_id", "status")) == {
        group.pk: "failed",
        direct.pk: "done",
    }


def test_a_reply_removed_while_written_stays_removed(settings, alice, group):
    settings.OPENAI_API_KEY = "configured"
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    claimed = runs.claim_next("test-worker")
    runs.show(claimed)
    reply = Message.objects.get(pk=claimed.message_id)
    room_services.do_delete_message(alice, reply)
    runs.save_progress(claimed, "secret text", None)
    runs.finish(claimed, status="done", text="secret text", progress=runs.Progress())
    reply.refresh_from_db()
    assert reply.is_deleted and reply.body == "" and reply.html == ""


def test_text_so_far_is_kept_as_html_for_a_reloaded_page(settings, alice, group):
    settings.OPENAI_API_KEY = "configured"
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    claimed = runs.claim_next("test-worker")
    runs.show(claimed)
    runs.save_progress(claimed, "**Half** an answer", None)
    assert Message.objects.get(pk=claimed.message_id).html == "<p><strong>Half</strong> an answer</p>"


def test_stopping_a_retry_before_it_starts_ends_its_message(fake_openai, alice, group):
    fake_openai.queue(status=500)
    room_services.do_post_message(membership(group, alice), "@assistant hello")
    runner.run_pending()
    failed = AssistantRun.objects.get()
    retry = services.do_retry_run(alice, failed).run
    services.do_stop_run(alice, retry)
    reply = Message.objects.get(pk=failed.reply_id)
    assert reply.state == Message.State.STOPPED and reply.note == "Stopped."


def test_a_refused_image_can_be_retried(settings, fake_openai, alice, alice_client, group):
    settings.OPENAI_API_KEY = ""
    post(alice_client, group, "/image a fox")
    refused = AssistantRun.objects.get()
    settings.OPENAI_API_KEY = "test-key"
    services.do_retry_run(alice, refused)
    runner.run_pending()
    assert AssistantRun.objects.latest("id").status == "done"
    assert fake_openai.image_requests()[0]["prompt"] == "a fox"


def test_joining_a_waiting_reply_does_not_dodge_the_daily_limit(settings, alice, bob, group):
    settings.OPENAI_API_KEY = "configured"
    settings.ASSISTANT_DAILY_RUNS = 1
    room_services.do_post_message(membership(group, bob), "@assistant spend my one")
    runs.claim_next("test-worker")  # bob's reply is running
    room_services.do_post_message(membership(group, alice), "@assistant alice asks")  # queued, alice's one
    room_services.do_post_message(membership(group, bob), "@assistant and again")
    assert "You have used today’s 1 assistant requests" in replies(group)[-1].note
    assert AssistantRun.objects.get(status="queued").requested_by == alice


def test_a_failed_reply_is_not_reused_for_a_new_question(fake_openai, alice, group):
    fake_openai.queue(status=500)
    room_services.do_post_message(membership(group, alice), "@assistant one")
    runner.run_pending()
    services.do_retry_run(alice, AssistantRun.objects.get())
    room_services.do_post_message(membership(group, alice), "@assistant a new question")
    assert AssistantRun.objects.filter(status="queued").count() == 2


def test_a_personality_with_newlines_is_counted_as_typed(alice_client, group):
    text = ("a line\r\n" * 250)[:1999]
    response = alice_client.post(
        reverse("assistant:settings", args=[group.pk]),
        {"name": "A", "personality": text, "reply_mode": "mention"},
    )
    assert response.status_code == 302
