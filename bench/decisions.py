"""What "Automatically" costs a busy room: decisions, replies, tokens, and delivery time.

A benchmark that prints figures, not a test. One daphne process serving Calpico (fresh
var/ directory, SQLite, the in-memory channel layer, the assistant's runner inside daphne
as `make run` has it), pointed at the fake OpenAI-compatible server (tests/fake_openai.py,
in this process), and a group of 20 people, each with a socket open on the room. The same
traffic is posted twice, 60 messages at 1 a second, each from the next of the 20 members:
first with the room's assistant set to When mentioned (no decisions), then set to
Automatically. The fake model answers every decision "silent", except the first
--respond (3), which answer "respond" (each followed by a short streamed reply); with
--respond 0 the difference is the decisions' own cost.

It prints, for each phase, the delivery time of the people's messages to every socket
(p50, p99), and, from the database, the decisions made, the replies, and their tokens.
Decisions are never on the post path, so the added p50 should be nothing but noise.

    .venv/bin/python bench/decisions.py
    .venv/bin/python bench/decisions.py --messages 60 --rate 1 --people 20

docs/performance.md has the latest figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fanout, load, server
from bench.fanout import Bench, CalpicoTarget
from bench.load import HttpPoster
from tests.fake_openai import FakeOpenAI

SILENT = json.dumps({"action": "silent", "emoji": "", "reason": "People are chatting among themselves."})
RESPOND = json.dumps({"action": "respond", "emoji": "", "reason": "A question to the group."})
REPLY = "Here is a short answer, streamed word by word like a real one, to a question nobody asked me."


class RotatingTarget(CalpicoTarget):
    """Each message is posted by the next member, as 20 people talking would."""

    def __init__(self, target: CalpicoTarget, posters: list[HttpPoster]) -> None:
        # CalpicoTarget posts with each of its posters in turn.
        super().__init__(target.servers, target.clients, target.connected, posters)
        self.first_poster = target.posters

    async def close(self) -> None:
        for poster in self.first_poster:
            await poster.close()
        await super().close()


def set_mode(room_id: int, mode: str) -> None:
    from assistant.models import AssistantSettings

    AssistantSettings.objects.update_or_create(room_id=room_id, defaults={"reply_mode": mode})


def usage_since(room_id: int, since: float) -> dict[str, int]:
    import datetime as dt

    from django.db.models import Count, Sum

    from assistant.models import AssistantRun

    runs = AssistantRun.objects.filter(
        room_id=room_id, created_at__gte=dt.datetime.fromtimestamp(since, dt.UTC)
    )
    decisions = runs.filter(kind=AssistantRun.Kind.DECISION)
    figures = decisions.aggregate(
        n=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    replies = runs.filter(kind=AssistantRun.Kind.REPLY)
    reply_figures = replies.aggregate(
        n=Count("id"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return {
        "decisions": figures["n"] or 0,
        "spoke": decisions.filter(decision=AssistantRun.Decision.RESPOND).count(),
        "decision_prompt_tokens": figures["prompt"] or 0,
        "decision_completion_tokens": figures["completion"] or 0,
        "replies": reply_figures["n"] or 0,
        "reply_tokens": (reply_figures["prompt"] or 0) + (reply_figures["completion"] or 0),
    }


async def measure(
    args: argparse.Namespace, bench: Bench, fake: FakeOpenAI
) -> list[tuple[str, fanout.Figures, dict]]:
    target = await bench.open_target("calpico")
    members = bench.setup.members
    posters = [
        HttpPoster(target.server.host, target.server.port, m.room_id, m.session_key, bench.setup.csrf_token)
        for m in members
    ]
    assert isinstance(target, CalpicoTarget)
    rotating = RotatingTarget(target, posters)
    room_id = members[0].room_id
    results = []
    try:
        # When mentioned twice, around Automatically: the difference between the two is noise.
        for mode in ("mention", "auto", "mention"):
            await asyncio.to_thread(set_mode, room_id, mode)
            fake.reset()
            fake.reply(SILENT)
            for _ in range(args.respond):
                fake.queue(text=RESPOND)
                fake.queue(text=REPLY, token_interval=0.02)
            await load.settle(0.5, 10)
            started = time.time()
            print(f"  {mode}: {args.messages} messages at {args.rate:g}/s ...", flush=True)
            figures = await bench.run_phase(rotating, args.rate, args.messages)
            # Let the last decision (after the final pause) and its reply finish.
            await asyncio.sleep(args.after)
            results.append((mode, figures, await asyncio.to_thread(usage_since, room_id, started)))
    finally:
        await rotating.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--respond", type=int, default=3, help="decisions answered respond (then silent)")
    parser.add_argument("--after", type=float, default=20.0, help="seconds to wait for the last decision")
    args = parser.parse_args(argv)
    fanout_args = fanout.parse_args(["--clients", str(args.people), "--grace", "10"])
    fanout_args.settle_limit = 15.0
    work_dir = Path(tempfile.mkdtemp(prefix="calpico-decisions-"))
    try:
        with FakeOpenAI(api_key="bench") as fake:
            env = fanout.calpico_server_env(work_dir, "", "", args.people + 1)
            env.update(OPENAI_API_KEY="bench", OPENAI_BASE_URL=fake.base_url)
            print("migrating a fresh SQLite database ...", flush=True)
            fanout.migrate(env)
            setup = fanout.create_people(env, args.people, args.people)
            bench = Bench(fanout_args, setup, work_dir, env)
            results = asyncio.run(measure(args, bench, fake))
    finally:
        server.stop_all()
        shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print(
        f"{args.people} people, one socket each; {args.messages} messages at {args.rate:g}/s, "
        "each by the next person"
    )
    base = 0.0
    for phase, (mode, figures, usage) in enumerate(results):
        p50, p99 = figures.pct(0.5), figures.pct(0.99)
        print(
            f"{mode:8} delivery p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
            f"received {figures.received}/{figures.expected}  post errors {len(figures.post_errors)}"
        )
        print(
            f"         decisions {usage['decisions']} (spoke {usage['spoke']}), tokens "
            f"{usage['decision_prompt_tokens']} in + {usage['decision_completion_tokens']} out; "
            f"replies {usage['replies']} ({usage['reply_tokens']} tokens)"
        )
        if phase == 0:
            base = p50
        elif mode == "auto":
            print(f"         added p50 with Automatically: {(p50 - base) * 1000:+.1f} ms")
        else:
            print(f"         When mentioned again, against the first: {(p50 - base) * 1000:+.1f} ms (noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
