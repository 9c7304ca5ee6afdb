"""Automatically: the assistant decides after each turn whether to speak, react or stay quiet.

The fake model is scripted per test: a decision call (not streamed, JSON) comes first, then
the reply it may lead to (streamed).
"""

import datetime as dt
import importlib
import logging

import pytest
from django.apps import apps
from django.urls import reverse
from django.utils import timezone

from assistant import runner, runs, services
from assistant.decider import parse_decision
from assistant.models import AssistantRun, AssistantSettings, ReplyMode
from assistant.private import do_add_memory
from rooms import emoji as emoji_data
from rooms import services as room_services
from rooms.models import Message, Reaction, Room
from tests.conftest import membership, post


def replies(room):
    return list(Message.objects.filter(room=room, kind=Message.Kind.ASSISTANT).order_by("seq"))


def decisions(room):
    return list(AssistantRun.objects.filter(room=room, kind=AssistantRun.Kind.DECISION).order_by("id"))


def say(room, user, body):
    return room_services.do_post_message(membership(room, user), body).message


# The mode itself


def test_a_new_group_joins_in_automatically(alice_client, group):
    page = alice_client.get(reverse("rooms:settings", args=[group.pk])).content.decode()
    assert 'value="auto"' in page and "Automatically" in page and "Every message" in page
    assert services.settings_for(group).reply_mode == ReplyMode.AUTO


def test_direct_rooms_still_wait_to_be_mentioned(direct):
    assert services.settings_for(direct).reply_mode == ReplyMode.MENTION


def test_existing_groups_keep_replying_when_mentioned_after_the_upgrade(alice, bob, group, direct):
    migration = importlib.import_module("assistant.migrations.0003_automatically")
    named = Room.objects.create(kind=Room.Kind.GROUP, title="Set before", owner=alice)
    AssistantSettings.objects.create(room=named, reply_mode=ReplyMode.ALWAYS)
    migration.keep_existing_groups_on_mention(apps, None)
    assert AssistantSettings.objects.get(room=group).reply_mode == ReplyMode.MENTION
    assert AssistantSettings.objects.get(room=named).reply_mode == ReplyMode.ALWAYS  # unchanged
    assert not AssistantSettings.objects.filter(room=direct).exists()


def test_choosing_automatically_tells_the_room(alice_client, group):
    alice_client.post(
        reverse("assistant:settings", args=[group.pk]), {"name": "Assistant", "reply_mode": "always"}
    )
    alice_client.post(
        reverse("assistant:settings", args=[group.pk]), {"name": "Assistant", "reply_mode": "auto"}
    )
    notes = list(Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).values_list("body", flat=True))
    assert "Alice Liddell set the assistant to join in when it has something useful to add" in notes


# A tactful member


def test_small_talk_stays_silent_and_a_question_gets_an_answer(fake_openai, alice, bob, alice_client, group):
    fake_openai.queue_decision("silent", "Friends chatting about the weekend.")
    say(group, bob, "haha what a weekend")
    runner.run_pending()
    assert replies(group) == []
    (silence,) = decisions(group)
    assert silence.decision == "silent" and silence.reason == "Friends chatting about the weekend."
    assert silence.status == AssistantRun.Status.DONE

    fake_openai.queue_decision("respond", "A factual question to the group I can answer.")
    fake_openai.queue(text="The museum opens at **10:00** on Sundays.")
    say(group, alice, "does anyone know when the museum opens on Sunday?")
    runner.run_pending()
    (reply,) = replies(group)
    assert reply.body == "The museum opens at **10:00** on Sundays." and reply.state == Message.State.DONE
    run = AssistantRun.objects.get(reply=reply)
    assert run.unprompted and run.requested_by == alice
    assert run.reason == "A factual question to the group I can answer."
    # Two decisions, one reply: the decision calls are small and not streamed.
    assert len(fake_openai.decision_requests()) == 2 and len(fake_openai.reply_requests()) == 1
    # Members see why it spoke, and can quiet it from there.
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "Why?" in page and "A factual question to the group I can answer." in page
    assert reverse("assistant:quiet", args=[group.pk]) in page


def test_the_decision_call_asks_for_json_and_sees_the_room(fake_openai, alice, bob, group):
    services.do_update_assistant(
        alice, group, name="Ada", personality="A cheerful hiking guide.", reply_mode=ReplyMode.AUTO
    )
    fake_openai.queue_decision("silent", "Nothing to add.")
    say(group, bob, "shall we go to the lake or the mountain?")
    runner.run_pending()
    (request,) = fake_openai.decision_requests()
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["properties"]["action"]["enum"] == [
        "respond", "react", "silent",
    ]  # fmt: skip
    system = request["messages"][0]["content"]
    assert "You are Ada" in system and "A cheerful hiking guide." in system and group.title in system
    assert request["messages"][-1] == {
        "role": "user",
        "content": "Bob Builder: shall we go to the lake or the mountain?",
    }


def test_the_decider_model_can_be_a_cheaper_one(settings, fake_openai, bob, group):
    settings.ASSISTANT_DECIDER_MODEL = "small-model"
    fake_openai.queue_decision("respond", "A question.")
    say(group, bob, "who wrote Dune?")
    runner.run_pending()
    assert fake_openai.decision_requests()[0]["model"] == "small-model"
    assert fake_openai.reply_requests()[0]["model"] == settings.ASSISTANT_MODEL
    assert decisions(group)[0].model == "small-model"


def test_a_mention_gets_a_reply_without_a_decision(fake_openai, bob, group):
    say(group, bob, "@assistant what is the capital of Peru?")
    runner.run_pending()
    assert len(replies(group)) == 1
    assert fake_openai.decision_requests() == [] and decisions(group) == []
    assert not AssistantRun.objects.get(kind="reply").unprompted


def test_asking_it_by_name_counts_as_a_mention(fake_openai, alice, bob, group):
    services.do_update_assistant(alice, group, name="Ada", personality="", reply_mode=ReplyMode.AUTO)
    say(group, bob, "Ada, what time is it in Lima?")
    runner.run_pending()
    assert len(replies(group)) == 1 and decisions(group) == []


@pytest.mark.parametrize(
    ("body", "addressed"),
    [
        ("Ada, what do you think?", True),
        ("hey Ada: any idea?", True),
        ("ada? are you there", True),
        ("what do you think, Ada?", True),
        ("Assistant, summarise this", True),
        ("I met Ada yesterday", False),
        ("Adam, what do you think?", False),
        ("Ada Lovelace was a mathematician", False),
    ],
)
def test_what_counts_as_addressing_it_by_name(body, addressed):
    assert services.addresses_assistant(body, "Ada") is addressed


def test_a_burst_of_messages_is_one_turn(fake_openai, alice, bob, carol, group):
    say(group, bob, "so")
    say(group, carol, "about saturday")
    say(group, alice, "who is bringing the tent?")
    (waiting,) = decisions(group)
    assert (
        waiting.status == AssistantRun.Status.QUEUED and waiting.trigger.body == "who is bringing the tent?"
    )
    fake_openai.queue_decision("silent", "They are organising among themselves.")
    runner.run_pending()
    assert len(fake_openai.decision_requests()) == 1


def test_a_decision_waits_for_a_pause(settings, bob, group):
    settings.OPENAI_API_KEY = "configured"
    settings.ASSISTANT_DECIDE_PAUSE_SECONDS = 60
    say(group, bob, "anyone around?")
    assert runs.claim_next("test-worker") is None  # still within the pause
    AssistantRun.objects.filter(kind="decision").update(not_before=timezone.now() - dt.timedelta(seconds=1))
    claimed = runs.claim_next("test-worker")
    assert claimed is not None and claimed.kind == "decision"


def test_it_reacts_with_an_emoji_like_a_member(fake_openai, alice, bob, alice_client, group):
    fake_openai.queue_decision("react", "Good news deserves a cheer.", "🎉")
    message = say(group, bob, "I got the job!!")
    runner.run_pending()
    assert replies(group) == []
    reaction = Reaction.objects.get(message=message)
    assert reaction.is_assistant and reaction.emoji == "🎉"
    assert decisions(group)[0].decision == "react"
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "🎉" in page


def test_its_reaction_says_why_to_the_room_live_and_on_page_load(
    fake_openai, alice, bob, alice_client, group, events
):
    fake_openai.queue_decision("react", "<b>Big</b> news deserves a cheer.", "🎉")
    message = say(group, bob, "I got the job!!")
    with events() as sent:
        runner.run_pending()
    reaction = Reaction.objects.get(message=message)
    assert reaction.reason == "<b>Big</b> news deserves a cheer."
    why = "Assistant — why: &lt;b&gt;Big&lt;/b&gt; news deserves a cheer."
    # Where the chip lists who reacted, escaped: pushed to the room, and drawn on the page.
    [(_, event)] = sent.of_type("room.reactions")
    assert why in event["html"] and "<b>Big</b>" not in event["html"]
    page = alice_client.get(group.get_absolute_url()).content.decode()
    chips = page[page.index(f'id="m-{message.pk}-reactions"') :]
    assert why in chips[: chips.index("</div>")] and "<b>Big</b>" not in page


def test_the_reason_for_a_reaction_stays_in_the_room(fake_openai, bob, mallory_client, group):
    fake_openai.queue_decision("react", "A secret reason.", "🎉")
    say(group, bob, "I got the job!!")
    runner.run_pending()
    assert Reaction.objects.get().reason == "A secret reason."
    response = mallory_client.get(group.get_absolute_url())
    assert response.status_code in (403, 404) and b"A secret reason." not in response.content


def test_a_reply_can_come_with_a_reaction_to_the_message_it_answers(
    fake_openai, alice, bob, alice_client, group
):
    fake_openai.queue_decision("respond", "A question I can answer; thanks deserve a smile.", "👍")
    fake_openai.queue(text="The museum opens at 10:00.")
    message = say(group, bob, "thanks all! when does the museum open?")
    runner.run_pending()
    assert [reply.body for reply in replies(group)] == ["The museum opens at 10:00."]
    reaction = Reaction.objects.get(message=message)
    assert reaction.is_assistant and reaction.emoji == emoji_data.canonical("👍")
    assert reaction.reason == "A question I can answer; thanks deserve a smile."
    assert decisions(group)[0].decision == "respond"
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "Assistant — why: A question I can answer; thanks deserve a smile." in page


def test_a_reply_with_an_emoji_it_cannot_give_is_still_a_reply(fake_openai, bob, group):
    fake_openai.queue_decision("respond", "A question.", "not-an-emoji")
    fake_openai.queue(text="Answer.")
    message = say(group, bob, "what is the speed of light?")
    runner.run_pending()
    assert [reply.body for reply in replies(group)] == ["Answer."]
    assert not Reaction.objects.filter(message=message).exists()
    assert decisions(group)[0].decision == "respond"


def test_a_held_back_reply_adds_no_reaction_either(fake_openai, bob, group):
    fake_openai.queue_decision("respond", "A question.")
    first = say(group, bob, "what is the boiling point of water at altitude?")
    runner.run_pending()
    # A decision about the same turn, made after the reply came out: held back, no emoji.
    AssistantRun.objects.create(room=group, kind=AssistantRun.Kind.DECISION, trigger=first)
    fake_openai.queue_decision("respond", "I could add more.", "👍")
    runner.run_pending()
    assert len(replies(group)) == 1 and decisions(group)[-1].decision == "silent"
    assert not Reaction.objects.exists()


def test_an_emoji_it_cannot_give_is_silence(fake_openai, bob, group):
    fake_openai.queue_decision("react", "Hmm.", "not-an-emoji")
    message = say(group, bob, "I got the job!!")
    runner.run_pending()
    assert not Reaction.objects.filter(message=message).exists()
    assert decisions(group)[0].decision == "silent" and decisions(group)[0].error_code == "bad_emoji"


# Guards a member can rely on


def test_never_two_unprompted_replies_without_a_person_between(fake_openai, bob, carol, group):
    fake_openai.queue_decision("respond", "A question.")
    first = say(group, bob, "what is the boiling point of water at altitude?")
    runner.run_pending()
    assert len(replies(group)) == 1
    # A decision about the same turn (made before the reply came out) must not speak again.
    AssistantRun.objects.create(room=group, kind=AssistantRun.Kind.DECISION, trigger=first)
    fake_openai.queue_decision("respond", "I could add more.")
    runner.run_pending()
    assert len(replies(group)) == 1
    held = decisions(group)[-1]
    assert held.decision == "silent" and "nobody has written since its last unprompted reply" in held.reason
    # Once a person writes, it may speak again.
    fake_openai.queue_decision("respond", "A follow-up question.")
    say(group, carol, "and in Denver?")
    runner.run_pending()
    assert len(replies(group)) == 2


def test_unprompted_replies_are_capped_per_hour(settings, fake_openai, bob, carol, group):
    settings.ASSISTANT_AUTO_REPLIES_PER_HOUR = 1
    fake_openai.queue_decision("respond", "A question.")
    say(group, bob, "what is 2+2?")
    runner.run_pending()
    fake_openai.queue_decision("respond", "Another question.")
    say(group, carol, "what is 3+3?")
    runner.run_pending()
    assert len(replies(group)) == 1
    assert "unprompted replies for this hour" in decisions(group)[-1].reason
    # A mention is not unprompted: it is still answered.
    say(group, carol, "@assistant what is 3+3?")
    runner.run_pending()
    assert len(replies(group)) == 2


def test_quiet_for_an_hour(fake_openai, alice, bob, bob_client, group):
    url = reverse("assistant:quiet", args=[group.pk])
    confirm = bob_client.get(url)
    assert confirm.status_code == 200 and "Keep the assistant quiet for an hour?" in confirm.content.decode()
    assert bob_client.post(url).status_code == 302
    note = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM).latest("seq")
    assert note.body == "Bob Builder asked the assistant to stay quiet for an hour; it still answers mentions"
    say(group, alice, "who knows a good pizza place?")
    assert decisions(group) == []
    say(group, alice, "@assistant who knows a good pizza place?")
    runner.run_pending()
    assert len(replies(group)) == 1
    # An hour later it joins in again.
    AssistantSettings.objects.filter(room=group).update(quiet_until=timezone.now() - dt.timedelta(minutes=1))
    group.refresh_from_db()
    fake_openai.queue_decision("silent", "Nothing to add.")
    say(group, alice, "anyway")
    assert len(decisions(group)) == 1


def test_quiet_drops_a_decision_not_yet_made(settings, alice, bob, bob_client, group):
    settings.OPENAI_API_KEY = "configured"
    settings.ASSISTANT_DECIDE_PAUSE_SECONDS = 60
    say(group, alice, "hello")
    bob_client.post(reverse("assistant:quiet", args=[group.pk]))
    assert decisions(group)[0].status == AssistantRun.Status.CANCELLED


def test_only_members_can_quiet_it(mallory_client, group):
    assert mallory_client.post(reverse("assistant:quiet", args=[group.pk])).status_code == 404


def test_no_decision_for_system_messages_or_its_own(fake_openai, alice, bob, group):
    room_services.do_rename_room(alice, group, "Trip planning")
    assert decisions(group) == []
    fake_openai.queue_decision("respond", "A question.")
    say(group, bob, "how far is Lyon from Paris?")
    runner.run_pending()
    assert len(replies(group)) == 1
    # Its own reply queued no decision about itself.
    assert len(decisions(group)) == 1


def test_one_decision_in_flight_per_room(fake_openai, alice, bob, group):
    say(group, bob, "first")
    claimed = runs.claim_next("test-worker")
    assert claimed is not None and claimed.kind == "decision"
    say(group, alice, "second")
    say(group, bob, "third")
    queued = AssistantRun.objects.filter(room=group, kind="decision", status="queued")
    assert queued.count() == 1 and queued.get().trigger.body == "third"
    assert runs.claim_next("test-worker") is None  # waits for the running one


def test_a_decision_costs_nobodys_allowance_unless_it_replies(fake_openai, bob, group):
    fake_openai.queue_decision("silent", "Small talk.")
    say(group, bob, "nice weather")
    runner.run_pending()
    assert services.runs_today(bob) == 0
    (silence,) = decisions(group)
    # The room's usage is recorded all the same.
    assert silence.requested_by is None and silence.prompt_tokens > 0 and silence.completion_tokens > 0
    fake_openai.queue_decision("respond", "A question.")
    say(group, bob, "what is the tallest mountain in Europe?")
    runner.run_pending()
    assert services.runs_today(bob) == 1


def test_over_the_daily_allowance_it_does_not_speak_unprompted(settings, fake_openai, bob, group):
    settings.ASSISTANT_DAILY_RUNS = 0
    fake_openai.queue_decision("respond", "A question.")
    say(group, bob, "what is the tallest mountain in Europe?")
    runner.run_pending()
    assert replies(group) == []  # no refusal notice under a message nobody addressed to it
    assert "daily allowance" in decisions(group)[0].reason


# When the model or server misbehaves


def test_an_answer_that_cannot_be_read_is_silence_and_logged(fake_openai, bob, group, caplog):
    fake_openai.queue(text="Well, I think I might say something.")
    with caplog.at_level(logging.WARNING, logger="assistant"):
        say(group, bob, "secret plans for the party")
        runner.run_pending()
    assert replies(group) == []
    (run,) = decisions(group)
    assert run.decision == "silent" and run.error_code == "unparsed" and run.status == "done"
    assert "could not be read" in caplog.text and "secret plans" not in caplog.text


def test_a_failing_model_is_silence_never_an_error_in_the_room(fake_openai, bob, group):
    fake_openai.queue(status=500)
    say(group, bob, "anyone?")
    runner.run_pending()
    assert replies(group) == []
    assert decisions(group)[0].decision == "silent" and decisions(group)[0].error_code == "server_error"


def test_a_server_without_json_schema_gets_plain_text(fake_openai, bob, group):
    fake_openai.queue(status=400, message="response_format is not supported")
    fake_openai.queue(text='Sure: ```json\n{"action": "respond", "emoji": "", "reason": "A question."}\n```')
    fake_openai.queue(text="Answer.")
    say(group, bob, "what is the speed of light?")
    runner.run_pending()
    first, second = fake_openai.decision_requests()
    assert "response_format" in first and "response_format" not in second
    assert [reply.body for reply in replies(group)] == ["Answer."]


def test_with_no_model_configured_automatically_makes_no_calls(alice_client, bob, group):
    say(group, bob, "what is the speed of light?")
    assert not AssistantRun.objects.exists() and replies(group) == []
    # A mention still gets today's "not configured" answer.
    post(alice_client, group, "@assistant hello?")
    assert "not configured" in replies(group)[0].note


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ('{"action": "silent", "emoji": "", "reason": "x"}', "silent"),
        ('{"action": "RESPOND", "reason": "x"}', "respond"),
        ('noise {"action": "react", "emoji": "👍", "reason": "x"} noise', "react"),
        ('{"action": "respond", "emoji": "👍", "reason": "x"}', "respond"),
        ('{"action": "react", "emoji": "", "reason": "x"}', None),
        ('{"action": "shout", "reason": "x"}', None),
        ("[1, 2]", None),
        ("{not json}", None),
        ("", None),
    ],
)
def test_parsing_a_decision(text, action):
    decision = parse_decision(text)
    assert (decision.action if decision else None) == action
    if decision is not None:
        assert decision.emoji == ("👍" if "👍" in text else "")


# Durable like every run


def test_a_decision_orphaned_by_a_crash_is_made_once_more(fake_openai, bob, group):
    message = say(group, bob, "who won the match?")
    claimed = runs.claim_next("gone:1:abc")
    assert claimed is not None
    AssistantRun.objects.filter(pk=claimed.run_id).update(
        heartbeat_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert runs.recover_orphans() == 1
    fake_openai.queue_decision("respond", "A question.")
    runner.run_pending()
    (run,) = decisions(group)
    assert run.status == "done" and run.attempts == 2 and run.trigger == message
    assert len(replies(group)) == 1


def test_the_admin_lists_every_decision_with_its_reason_and_cost(fake_openai, admin_client, bob, group):
    fake_openai.queue_decision("silent", "Small talk about cats.")
    say(group, bob, "my cat is asleep")
    runner.run_pending()
    page = admin_client.get(
        reverse("admin:assistant_assistantrun_changelist") + "?kind=decision"
    ).content.decode()
    assert "Small talk about cats." in page and "silent" in page.lower()


# Privacy


def test_no_memories_reach_a_decision(fake_openai, alice, bob, group):
    do_add_memory(alice, "my bank PIN is 4321")
    do_add_memory(bob, "I am secretly planning a surprise")
    fake_openai.queue_decision("respond", "A question.")
    say(group, alice, "what should we cook tonight?")
    runner.run_pending()
    sent = str(fake_openai.chat_requests())
    assert "4321" not in sent and "surprise" not in sent
    assert "4321" not in str(AssistantRun.objects.values_list("prompt", flat=True))


def test_works_in_a_direct_room_set_to_automatically(fake_openai, alice, bob, direct):
    services.do_update_assistant(alice, direct, name="Assistant", personality="", reply_mode=ReplyMode.AUTO)
    fake_openai.queue_decision("respond", "A question.")
    say(direct, bob, "what is the time difference with Tokyo?")
    runner.run_pending()
    assert len(replies(direct)) == 1


def test_a_room_that_never_pauses_still_gets_a_decision(settings, bob, group):
    settings.OPENAI_API_KEY = "configured"
    settings.ASSISTANT_DECIDE_PAUSE_SECONDS = 10
    say(group, bob, "one")
    (waiting,) = decisions(group)
    AssistantRun.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - dt.timedelta(seconds=35))
    say(group, bob, "two")
    waiting.refresh_from_db()
    # Put off to at most four pauses after the first message, not ten seconds from now.
    assert (
        waiting.not_before
        <= waiting.created_at + dt.timedelta(seconds=40)
        < timezone.now() + dt.timedelta(seconds=10)
    )


def test_decisions_count_against_the_rooms_ai_budget(fake_openai, bob, group):
    from assistant.models import BudgetUsage

    fake_openai.queue_decision("silent", "Small talk.")
    say(group, bob, "nice weather")
    runner.run_pending()
    usage = BudgetUsage.objects.get(room=group, kind=AssistantRun.Kind.DECISION)
    assert usage.user is None and usage.runs == 1 and usage.tokens > 0


def test_with_the_rooms_budget_used_up_it_decides_nothing(fake_openai, alice, bob, group):
    from assistant import budget

    budget.do_set_budget(alice, group, unit="runs", limit=1)
    fake_openai.queue_decision("silent", "Small talk.")
    say(group, bob, "nice weather")
    runner.run_pending()
    say(group, bob, "still nice")
    assert len(decisions(group)) == 1


def test_an_unprompted_reply_that_never_spoke_does_not_silence_the_room(fake_openai, bob, carol, group):
    # An unprompted reply that ended before it had a message (its process died twice
    # before showing it: recovery fails it without one) said nothing in the room.
    first = say(group, bob, "what is the boiling point of water?")
    AssistantRun.objects.create(
        room=group,
        kind=AssistantRun.Kind.REPLY,
        status=AssistantRun.Status.FAILED,
        requested_by=bob,
        trigger=first,
        unprompted=True,
        error_code="interrupted",
    )
    AssistantRun.objects.filter(kind=AssistantRun.Kind.DECISION).delete()
    fake_openai.queue_decision("respond", "A question.")
    say(group, carol, "and at altitude?")
    runner.run_pending()
    assert decisions(group)[-1].decision == "respond", decisions(group)[-1].reason
    assert len(replies(group)) == 1


def test_no_unprompted_reply_right_after_it_answered_a_mention(settings, fake_openai, bob, carol, group):
    # Bob's question waits for its pause; meanwhile Carol mentions the assistant, which
    # answers at once. The decision about Bob's turn then must not speak again before a
    # person has: two assistant messages in a row is the flood the guards are there for.
    settings.ASSISTANT_DECIDE_PAUSE_SECONDS = 60
    say(group, bob, "does anyone know when the museum opens?")
    fake_openai.reply("It opens at 9.")
    say(group, carol, "@assistant when does the museum open?")
    runner.run_pending()  # the mention's reply; the decision still waits for its pause
    assert len(replies(group)) == 1 and decisions(group)[0].status == AssistantRun.Status.QUEUED
    AssistantRun.objects.filter(kind=AssistantRun.Kind.DECISION).update(not_before=None)
    fake_openai.queue_decision("respond", "Bob asked the group.")
    runner.run_pending()
    assert len(replies(group)) == 1
    held = decisions(group)[-1]
    assert held.decision == "silent" and "nobody has written since it last spoke" in held.reason


def test_pressing_quiet_again_does_not_fill_the_room_with_notices(alice, bob_client, group):
    # Any member may press it: a second press within the hour changes nothing, and says
    # nothing more (a member could otherwise post system messages at will).
    url = reverse("assistant:quiet", args=[group.pk])
    for _ in range(3):
        assert bob_client.post(url).status_code == 302
    notes = Message.objects.filter(room=group, kind=Message.Kind.SYSTEM, event="assistant_quiet_hour")
    assert notes.count() == 1


def test_quiet_applies_only_to_automatically(alice, bob_client, group):
    services.do_update_assistant(alice, group, name="Assistant", personality="", reply_mode=ReplyMode.MENTION)
    response = bob_client.post(reverse("assistant:quiet", args=[group.pk]))
    assert response.status_code in (302, 400)
    assert not Message.objects.filter(room=group, event="assistant_quiet_hour").exists()
