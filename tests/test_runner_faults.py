"""The runner when processes start, stop and die: no reply is streamed twice, none stays
frozen. The tests with two real daphne processes are in tests/test_runner_processes.py."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from assistant import runner
from assistant.models import AssistantRun
from rooms import services as room_services
from rooms.models import Message
from tests.conftest import membership

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_until(check, timeout: float = 5.0, what: str = "the condition") -> None:
    """Poll a database check (bounded) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await sync_to_async(check)():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_run_claimed_while_the_runner_starts_is_streamed_once(fake_openai, alice, group):
    """A process starts (alone: every running run is taken to be left by a restart) and a
    mention arrives while it is still recovering. The run is claimed once and streamed
    once: recovery never hands back a run this runner has just started."""
    recovering, resume, recovered = threading.Event(), asyncio.Event(), asyncio.Event()

    def database(func):
        call = runner.RunnerDatabase(func)
        if func is not runner.recover_orphans:
            return call

        async def paused(*args, **kwargs):
            recovering.set()
            await resume.wait()
            try:
                return await call(*args, **kwargs)
            finally:
                recovered.set()

        return paused

    gate = threading.Event()
    fake_openai.queue(tokens=["Only ", "once"], gate=gate)
    worker = runner.Runner(db=database)
    runner.install(worker)
    serving = asyncio.ensure_future(worker.serve(recover_everything=True))
    try:
        assert await asyncio.to_thread(recovering.wait, 5)
        # A person posts through the ordinary path while the runner is still starting.
        await sync_to_async(lambda: room_services.do_post_message(membership(group, alice), "@assistant"))()
        resume.set()
        await asyncio.wait_for(recovered.wait(), 5)
        running = AssistantRun.objects.filter(room=group, status="running")
        await wait_until(running.exists, what="the run to start")
        run = await sync_to_async(AssistantRun.objects.get)(room=group)
        assert run.attempts == 1, "recovery handed back a run this runner had just claimed"
        gate.set()
        await wait_until(
            lambda: AssistantRun.objects.filter(room=group, status="done").exists() and not worker.tasks,
            what="the reply to finish",
        )
        assert len(fake_openai.chat_requests()) == 1
        reply = await sync_to_async(Message.objects.get)(room=group, kind=Message.Kind.ASSISTANT)
        assert reply.body == "Only once" and reply.state == Message.State.DONE
    finally:
        gate.set()
        resume.set()
        runner.install(None)
        serving.cancel()
