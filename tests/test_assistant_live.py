"""The assistant's reply as room members see it over their sockets: thinking, streaming,
stopped, and caught up after a reconnect."""

import asyncio
import html as html_module
import json
import re
import threading

import pytest
from asgiref.sync import sync_to_async

from assistant import runner, runs, services
from assistant.models import AssistantRun
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import membership
from tests.sockets import answered, apost, connected, delivered, frames, html

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def serving_runner():
    """This process's runner, serving as it does inside the web server."""
    worker = runner.Runner()
    runner.install(worker)
    task = asyncio.ensure_future(worker.serve())
    yield worker
    runner.install(None)
    task.cancel()


async def collect_until(socket, pattern: str, timeout: float = 5.0) -> list[str]:
    """Frames until one matches `pattern` (a regex), or fail after `timeout` seconds."""
    received = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no frame matched {pattern!r}; got {received!r}"
        frame = await socket.receive_from(timeout=remaining)
        received.append(frame)
        if re.search(pattern, frame):
            return received


async def test_a_reply_streams_to_every_member_viewing_the_room(
    fake_openai, serving_runner, alice, bob, group
):
    words = [f"word{i} " for i in range(30)]
    fake_openai.queue(tokens=words, token_interval=0.02)
    alice_socket = await connected(alice, group)
    bob_socket = await connected(bob, group)
    await apost(group, alice, "@assistant count for us")

    seen = {}
    for name, socket in (("alice", alice_socket), ("bob", bob_socket)):
        seen[name] = await collect_until(socket, r"message--done")
    for received in seen.values():
        body = html(received)
        assert "Assistant is thinking" in body or "message--streaming" in body
        partial = [
            f for f in received if 'id="m-' in f and "-body" in f and "word0" in f and "word29" not in f
        ]
        # Partial text arrives in coalesced steps: several, far fewer than one per token.
        assert 2 <= len(partial) < len(words)
        assert "word29" in received[-1] and "message--done" in received[-1]
    await alice_socket.disconnect()
    await bob_socket.disconnect()
    reply = await sync_to_async(lambda: Message.objects.get(room=group, kind="assistant"))()
    assert reply.body == "".join(words).strip() and reply.state == Message.State.DONE


async def test_members_elsewhere_see_it_in_the_sidebar_not_the_stream(
    fake_openai, serving_runner, alice, bob, group, direct
):
    fake_openai.queue(tokens=["one ", "two ", "three"], token_interval=0.05)
    bob_elsewhere = await connected(bob, direct)
    await apost(group, alice, "@assistant hi")
    # The finished reply's preview comes after every partial text the room was sent.
    received = await collect_until(bob_elsewhere, rf'id="sidebar-preview-{group.pk}"[^<]*one two three')
    assert "sidebar-preview-" in html(received)
    assert not any(re.search(r'id="m-\d+-body"', f) for f in received)
    await bob_elsewhere.disconnect()


async def test_members_elsewhere_see_in_the_sidebar_that_it_could_not_reply(
    fake_openai, serving_runner, alice, bob, group, direct
):
    await sync_to_async(services.do_update_assistant)(
        alice, group, name="Planner", personality="", reply_mode="mention"
    )
    fake_openai.queue(status=400)
    bob_elsewhere = await connected(bob, direct)
    await apost(group, alice, "@Planner where should we go?")
    received = await collect_until(bob_elsewhere, rf'id="sidebar-preview-{group.pk}"[^<]*couldn')
    assert html_module.unescape(received[-1]).count("Planner: couldn't reply") == 1
    await bob_elsewhere.disconnect()


async def test_any_member_can_stop_a_reply_and_the_text_so_far_stays(
    fake_openai, serving_runner, alice, bob, group
):
    gate = threading.Event()
    fake_openai.queue(tokens=["The ", "first ", "part", " and more"], gate=gate)
    socket = await connected(alice, group)
    await apost(group, alice, "@assistant tell me a long story")
    await collect_until(socket, r">The<")
    run = await sync_to_async(lambda: AssistantRun.objects.get(room=group))()
    assert (await sync_to_async(services.do_stop_run)(bob, run)).changed
    received = await collect_until(socket, r"message--stopped")
    gate.set()
    assert "Stopped." in received[-1]
    run = await sync_to_async(lambda: AssistantRun.objects.select_related("reply").get(room=group))()
    assert run.status == AssistantRun.Status.CANCELLED
    assert run.reply.body == "The" and run.reply.state == Message.State.STOPPED
    await socket.disconnect()


async def test_stop_from_another_process_is_noticed_through_the_database(
    fake_openai, serving_runner, alice, group
):
    gate = threading.Event()
    fake_openai.queue(tokens=["Partial", " rest"], gate=gate)
    socket = await connected(alice, group)
    await apost(group, alice, "@assistant go")
    await collect_until(socket, r"Partial")
    # As if Stop was pressed on a server that does not hold this run: only the row changes.
    await sync_to_async(lambda: AssistantRun.objects.filter(room=group).update(cancel_requested=True))()
    await collect_until(socket, r"message--stopped", timeout=5)
    gate.set()
    await socket.disconnect()


async def test_a_reconnecting_page_catches_up_on_a_reply_that_finished_meanwhile(
    fake_openai, serving_runner, alice, group
):
    gate = threading.Event()
    fake_openai.queue(tokens=["Half ", "way ", "there"], gate=gate)
    socket = await connected(alice, group)
    trigger = (await apost(group, alice, "@assistant hello")).message
    received = await collect_until(socket, r"Half")
    since = await sync_to_async(lambda: trigger.created_at.isoformat())()
    await socket.disconnect()  # the page loses its connection mid-reply

    gate.set()
    done = sync_to_async(lambda: AssistantRun.objects.filter(room=group, status="done").exists())
    for _ in range(100):
        if await done():
            break
        await asyncio.sleep(0.05)
    reply_seq = max(int(s) for s in re.findall(r'data-seq="(\d+)"', html(received)))

    socket = await connected(alice, group)
    await socket.send_to(
        text_data=json.dumps(
            {"type": "resume", "room": group.pk, "last_seq": reply_seq, "oldest_seq": 1, "since": since}
        )
    )
    body = html(await answered(socket))
    assert "Half way there" in body and "message--done" in body
    await socket.disconnect()


async def test_a_reloaded_page_shows_the_reply_in_progress(
    fake_openai, serving_runner, alice, alice_client, group
):
    gate = threading.Event()
    fake_openai.queue(tokens=["Still ", "writing"], gate=gate)
    socket = await connected(alice, group)
    await apost(group, alice, "@assistant hello")
    await collect_until(socket, r"Still")
    await asyncio.sleep(1.3)  # the runner keeps the text so far about once a second
    page = (await sync_to_async(alice_client.get)(group.get_absolute_url())).content.decode()
    gate.set()
    assert "message--streaming" in page and "Still" in page and ">Stop<" in page
    await socket.disconnect()


# Starting a reply without a trip through the queue


async def test_a_mention_is_claimed_as_its_post_commits_and_streams_after_its_placeholder(
    fake_openai, serving_runner, alice, bob, group
):
    """With a free slot, the posting thread claims the run once the post commits: by the
    time the post returns the run is running here and its "thinking" message directly
    follows the question. The room sees that message before any of the reply's text."""
    fake_openai.queue(tokens=["Right ", "away"], token_interval=0.02)
    socket = await connected(bob, group)
    trigger = (await apost(group, alice, "@assistant quick one")).message

    run, reply = await sync_to_async(
        lambda: (
            AssistantRun.objects.get(room=group),
            Message.objects.get(room=group, kind=Message.Kind.ASSISTANT),
        )
    )()
    assert run.status == AssistantRun.Status.RUNNING and run.worker == serving_runner.worker
    assert run.attempts == 1 and run.reply_id == reply.pk and run.model
    assert reply.seq == trigger.seq + 1 and reply.state == Message.State.STREAMING

    received = await collect_until(socket, r"message--done")
    placeholder_at = next(i for i, f in enumerate(received) if f'id="m-{reply.pk}"' in f)
    first_text_at = next(i for i, f in enumerate(received) if "Right" in f)
    # The text comes with the message (its first words may already be in) or after it.
    assert placeholder_at <= first_text_at
    assert "Right away" in received[-1]
    await socket.disconnect()


async def test_a_post_that_finds_every_slot_taken_leaves_its_run_to_the_queue(
    fake_openai, serving_runner, alice, group, monkeypatch
):
    """The runner is full when the post looks: the run waits in the queue and is answered
    once a slot frees, in one message."""
    fake_openai.queue(text="Later but here")
    slots = {"free": False, "refused": 0}
    reserve = serving_runner.reserve

    def full_until_freed():
        if not slots["free"]:
            slots["refused"] += 1
            return False
        return reserve()

    monkeypatch.setattr(serving_runner, "reserve", full_until_freed)
    socket = await connected(alice, group)
    await apost(group, alice, "@assistant eventually")
    run = await sync_to_async(lambda: AssistantRun.objects.get(room=group))()
    assert slots["refused"] and run.status == AssistantRun.Status.QUEUED and run.reply_id is None

    slots["free"] = True
    serving_runner.notify_threadsafe()
    await collect_until(socket, r"message--done")
    run = await sync_to_async(lambda: AssistantRun.objects.select_related("reply").get(room=group))()
    assert run.status == AssistantRun.Status.DONE and run.attempts == 1
    assert run.reply.body == "Later but here"
    assert await sync_to_async(lambda: Message.objects.filter(room=group, kind="assistant").count())() == 1
    await socket.disconnect()


async def test_a_run_that_cannot_be_prepared_in_the_post_still_fails_visibly(
    fake_openai, serving_runner, alice, group, monkeypatch
):
    from assistant import prompt

    def broken(*args, **kwargs):
        raise OSError("the attachment is gone")

    monkeypatch.setattr(prompt, "build_chat_prompt", broken)
    monkeypatch.setattr(runs, "build_chat_prompt", broken)
    socket = await connected(alice, group)
    result = await apost(group, alice, "@assistant look at this")
    assert result.created  # the question itself is kept
    received = await collect_until(socket, r"message--failed")
    assert "Something went wrong before the assistant could start." in received[-1]
    assert ">Retry<" in received[-1]
    run = await sync_to_async(lambda: AssistantRun.objects.get(room=group))()
    assert run.status == AssistantRun.Status.FAILED and run.reply_id is not None
    await socket.disconnect()


async def test_a_post_that_rolls_back_asks_the_model_nothing(fake_openai, serving_runner, alice, group):
    """Nothing of the assistant's work starts before the post commits: a post whose
    transaction rolls back leaves no run, no message, and no request to the model."""
    from django.db import transaction

    fake_openai.queue(text="never shown")
    socket = await connected(alice, group)

    def post_then_fail():
        with transaction.atomic():
            room_services.do_post_message(membership(group, alice), "@assistant hello")
            raise RuntimeError("something after the post failed")

    with pytest.raises(RuntimeError):
        await sync_to_async(post_then_fail)()
    serving_runner.notify_threadsafe()  # a runner looking now finds nothing either
    await asyncio.sleep(0.2)
    assert fake_openai.requests == []
    assert not serving_runner.tasks and serving_runner.reserved == 0
    assert await frames(socket) == []
    kept = await sync_to_async(lambda: list(Message.objects.filter(room=group).values_list("kind", "body")))()
    assert not [m for m in kept if m[0] != Message.Kind.SYSTEM]
    assert not await sync_to_async(AssistantRun.objects.exists)()
    await socket.disconnect()


async def test_the_reply_s_message_holds_the_words_that_arrived_before_it_was_shown(alice, group):
    """The model is asked before the reply's message is stored: words already in by then
    are stored and shown with it, so a page never sees "thinking" over text that exists."""
    socket = await connected(alice, group)

    def claim():
        trigger = room_services.do_post_message(membership(group, alice), "hello").message
        AssistantRun.objects.create(room=group, requested_by=alice, trigger=trigger)
        return runs.claim_next("test-worker")

    claimed = await sync_to_async(claim)()
    before = html(await delivered(socket))
    assert "hello" in before and "message--streaming" not in before  # claimed, nothing shown
    claimed.progress.text = "Bonjour **à** tous"
    await sync_to_async(runs.show)(claimed)
    body = html(await delivered(socket))
    assert f'id="m-{claimed.message_id}"' in body
    assert "Bonjour <strong>à</strong> tous" in body and "is thinking" not in body
    stored = await sync_to_async(Message.objects.get)(pk=claimed.message_id)
    assert stored.body == "Bonjour **à** tous" and stored.state == Message.State.STREAMING
    await socket.disconnect()


async def test_what_the_assistant_posts_with_a_question_reaches_pages_after_the_question(alice, bob, group):
    """A refusal (no key configured) is stored in the question's transaction: pages get the
    question first, then the refusal, in sequence order."""
    socket = await connected(bob, group)
    question = (await apost(group, alice, "@assistant are you there?")).message
    received = html(await delivered(socket))
    refusal = await sync_to_async(
        lambda: Message.objects.get(room=group, kind=Message.Kind.ASSISTANT, seq=question.seq + 1)
    )()
    assert received.index(f'id="m-{question.pk}"') < received.index(f'id="m-{refusal.pk}"')
    await socket.disconnect()
