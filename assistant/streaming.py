"""Doing one run: ask the model, push its text to the room, store how it ended.

The half of the runner (`assistant/runner.py`) that deals with a single run; the other half
claims runs and keeps the slots, the heartbeat and the process's life. `Runner` inherits
this, and provides the attributes declared below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import openai
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from assistant.asking import push_answer_text
from assistant.decider import apply_decision, ask_for_decision, parse_decision
from assistant.model_api import StreamCut, describe_error, generate_image, make_client, open_chat_stream
from assistant.models import AssistantRun
from assistant.runner_db import DatabaseCall
from assistant.runs import LOST, STOP, Claimed, Progress, finish, save_progress, show_note
from assistant.search import MAX_SEARCHES, WEB_SEARCH_TOOL, search, sources_markdown
from assistant.summary import apply_summary, ask_for_summary
from calpico import metrics
from rooms.attachments import attachment_from_bytes
from rooms.live import push_partial_text

log = logging.getLogger(__name__)

# Longest a run waits for its message to be stored and shown before it gives up (and is
# recovered like a stopped process's run): only a stuck database takes that long.
ANNOUNCE_WAIT = 5.0


class Abandoned(Exception):
    """The run's message could not be shown: nothing more of it is pushed or stored."""


class RunStreaming:
    db: DatabaseCall
    stopping: set[int]
    closing: bool
    _client: openai.AsyncOpenAI | None
    _client_key: tuple[str, str, float] | None

    def stop_run(self, run_id: int) -> None:
        raise NotImplementedError

    def drop_run(self, run_id: int) -> None:
        raise NotImplementedError

    async def execute(self, claimed: Claimed) -> None:
        """Ask the model, push its text to the room, store how it ended."""
        if claimed.kind == AssistantRun.Kind.DECISION:
            await self._decide(claimed)
            return
        if claimed.kind == AssistantRun.Kind.SUMMARY:
            await self._summarise(claimed)
            return
        progress = claimed.progress
        asked_at, asked_monotonic = timezone.now(), time.monotonic()

        watcher = asyncio.get_running_loop().create_task(self._watch(claimed, progress))
        status, error_code, error, image = str(AssistantRun.Status.DONE), "", "", None
        try:
            if claimed.kind == AssistantRun.Kind.IMAGE:
                image = await self._make_image(claimed, progress)
            else:
                await self._stream_reply(claimed, progress)
        except asyncio.CancelledError:
            if claimed.run_id not in self.stopping:
                raise  # the process is shutting down; recovery deals with the run
            status = AssistantRun.Status.CANCELLED
        except Abandoned:
            return
        except Exception as exc:
            if self.closing and claimed.run_id not in self.stopping:
                # The process is stopping and cancelled the request, which the client may
                # report as a lost connection: the run is handed back, not failed.
                raise asyncio.CancelledError from exc
            status = AssistantRun.Status.FAILED
            error_code, error = describe_error(exc)
            if error_code == "error":
                log.exception("Assistant run %s failed", claimed.run_id)
            else:
                log.warning("Assistant run %s failed: %s", claimed.run_id, error_code)
        finally:
            progress.finished = True
            watcher.cancel()
        metrics.MODEL_SECONDS.labels(kind=claimed.kind, status=status).observe(
            time.monotonic() - asked_monotonic
        )
        if progress.first_token_at is not None:
            first = (progress.first_token_at - asked_at).total_seconds()
            metrics.MODEL_FIRST_TOKEN_SECONDS.labels(kind=claimed.kind).observe(max(first, 0.0))
        try:
            if not await self._announced(claimed):
                return
            text = progress.text.strip()
            if text and claimed.sources:
                text += sources_markdown(claimed.sources)
            await self.db(finish)(
                claimed,
                status=status,
                text=text,
                progress=progress,
                error_code=error_code,
                error=error,
                image=image,
            )
        except Exception:
            log.exception("Could not store the end of assistant run %s", claimed.run_id)

    async def _decide(self, claimed: Claimed) -> None:
        """A decision (assistant/decider.py): one small call, then act on it. Anything that
        goes wrong is silence, logged without the conversation, never shown in the room."""
        decision, usage, error = None, None, ""
        asked_monotonic = time.monotonic()
        try:
            text, usage = await ask_for_decision(self.client(), model=claimed.model, messages=claimed.prompt)
            decision = parse_decision(text)
            if decision is None:
                error = "unparsed"
                log.warning("Assistant decision %s could not be read; staying silent", claimed.run_id)
        except Exception as exc:
            error = describe_error(exc)[0]
            log.warning("Assistant decision %s failed (%s); staying silent", claimed.run_id, error)
        metrics.MODEL_SECONDS.labels(kind=claimed.kind, status=error or "done").observe(
            time.monotonic() - asked_monotonic
        )
        try:
            await self.db(apply_decision)(claimed, decision, usage, error)
        except Exception:
            log.exception("Could not store assistant decision %s", claimed.run_id)

    async def _summarise(self, claimed: Claimed) -> None:
        """The room's rolling summary (assistant/summary.py): one call, stored on the room.
        A failure leaves the previous summary as it was, logged without the conversation."""
        text, usage, error = "", None, ""
        try:
            text, usage = await ask_for_summary(self.client(), model=claimed.model, messages=claimed.prompt)
        except Exception as exc:
            error = describe_error(exc)[0]
            log.warning("Assistant summary %s failed (%s)", claimed.run_id, error)
        try:
            await self.db(apply_summary)(claimed, text, usage, error)
        except Exception:
            log.exception("Could not store assistant summary %s", claimed.run_id)

    def client(self) -> openai.AsyncOpenAI:
        """One client for the runner's life (see `model_api.make_client`), made anew when
        the settings change (tests)."""
        key = (settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, settings.ASSISTANT_TIMEOUT_SECONDS)
        if self._client is None or self._client_key != key:
            self._client, self._client_key = make_client(), key
        return self._client

    async def _stream_reply(self, claimed: Claimed, progress: Progress) -> None:
        """Stream the reply. With web search on (assistant/search.py), the model may first
        call `web_search`: the room sees "Searching the web for …", the results go back as
        the tool's output, and the reply then streams from a second request."""
        messages = claimed.prompt
        tools = [WEB_SEARCH_TOOL] if claimed.search else None
        for _round in range(2):
            try:
                stream = await open_chat_stream(
                    self.client(),
                    model=claimed.model,
                    messages=messages,
                    max_tokens=settings.ASSISTANT_MAX_REPLY_TOKENS,
                    tools=tools,
                )
            except openai.BadRequestError:
                if not tools:
                    raise
                # A server (or model) without tools: the same request, without search.
                log.info(
                    "Assistant run %s: the model refused tools; answering without search", claimed.run_id
                )
                tools = None
                stream = await open_chat_stream(
                    self.client(),
                    model=claimed.model,
                    messages=messages,
                    max_tokens=settings.ASSISTANT_MAX_REPLY_TOKENS,
                )
            calls = await self._read_stream(claimed, progress, stream)
            if not calls:
                return
            tools = None  # one round of searches, then an answer
            results = []
            for call in calls[:MAX_SEARCHES]:
                try:
                    query = str(json.loads(call["arguments"] or "{}").get("query") or "")
                except (ValueError, AttributeError):
                    query = ""
                await self._say(claimed, f"Searching the web for “{query[:120]}”…")
                output, sources = await asyncio.to_thread(search, query, len(claimed.sources) + 1)
                claimed.sources.extend(sources)
                results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
            asked = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for call in calls[:MAX_SEARCHES]
            ]
            messages = [*messages, {"role": "assistant", "content": None, "tool_calls": asked}, *results]
        raise StreamCut()

    async def _read_stream(self, claimed: Claimed, progress: Progress, stream: Any) -> list[dict[str, str]]:
        """Read one streamed answer into `progress`; the tool calls it ended with, if any."""
        finished = False
        calls: dict[int, dict[str, str]] = {}
        wants_tools = False
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    progress.usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    piece = delta.content if delta else None
                    if piece:
                        if progress.first_token_at is None:
                            progress.first_token_at = timezone.now()
                        progress.text += piece
                        progress.pieces += 1
                        progress.dirty = True
                    for tool_call in (delta.tool_calls if delta else None) or []:
                        call = calls.setdefault(tool_call.index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = tool_call.id or call["id"]
                        if tool_call.function is not None:
                            call["name"] = tool_call.function.name or call["name"]
                            call["arguments"] += tool_call.function.arguments or ""
                    if choice.finish_reason is not None:
                        finished = True
                        wants_tools = choice.finish_reason == "tool_calls"
                        progress.cut_at_length = choice.finish_reason == "length"
                if (
                    progress.dirty
                    and time.monotonic() - progress.last_push >= settings.ASSISTANT_STREAM_INTERVAL
                ):
                    await self._push(claimed, progress)
        finally:
            await stream.close()
        if not finished:
            raise StreamCut()
        if not (wants_tools or calls):
            return []
        return [call for _index, call in sorted(calls.items()) if call["name"] == "web_search"]

    async def _say(self, claimed: Claimed, note: str) -> None:
        """Show `note` in the reply's place while it is not written yet ("Searching the web
        for …")."""
        if not await self._announced(claimed):
            raise Abandoned()
        await self.db(show_note)(claimed, note)

    async def _make_image(self, claimed: Claimed, progress: Progress) -> ContentFile[bytes]:
        data = await generate_image(self.client(), model=claimed.model, prompt=claimed.prompt["prompt"])
        progress.first_token_at = timezone.now()
        return await asyncio.to_thread(attachment_from_bytes, data)

    async def _announced(self, claimed: Claimed) -> bool:
        """Wait until the reply's message is in the room. False if it never will be:
        showing it failed, or took longer than a database ever should (the run is then
        left to recovery, like a stopped process's)."""
        if not claimed.announced.is_set():
            try:
                await asyncio.wait_for(claimed.announced.wait(), timeout=ANNOUNCE_WAIT)
            except TimeoutError:
                log.warning("Assistant run %s: its message was not shown in time", claimed.run_id)
                return False
        return claimed.shown

    async def _push(self, claimed: Claimed, progress: Progress) -> None:
        if not await self._announced(claimed):
            raise Abandoned()
        progress.dirty = False
        progress.last_push = time.monotonic()
        if claimed.answer_id is not None:  # private: to its asker's pages only
            assert claimed.user_id is not None
            await push_answer_text(claimed.user_id, claimed.room_id, claimed.answer_id, progress.text)
            return
        assert claimed.message_id is not None
        await push_partial_text(claimed.room_id, claimed.message_id, progress.text)

    async def _watch(self, claimed: Claimed, progress: Progress) -> None:
        """Push text that arrived since the last push, save it, notice Stop (the runner's
        heartbeat, `_beat`, keeps the run alive from its claim on)."""
        last_save = time.monotonic()
        while not progress.finished:
            await asyncio.sleep(settings.ASSISTANT_STREAM_INTERVAL)
            if not claimed.announced.is_set():
                continue  # nothing is pushed or stored before the reply's message
            if not claimed.shown:
                return
            if progress.dirty and time.monotonic() - progress.last_push >= settings.ASSISTANT_STREAM_INTERVAL:
                await self._push(claimed, progress)
            if time.monotonic() - last_save >= settings.ASSISTANT_HEARTBEAT_SECONDS:
                last_save = time.monotonic()
                text = progress.text if progress.text != progress.saved_text else ""
                progress.saved_text = progress.text
                try:
                    found = await self.db(save_progress)(claimed, text, progress.first_token_at)
                except Exception:
                    log.exception("Could not save progress of assistant run %s", claimed.run_id)
                    continue
                if found == STOP:
                    self.stop_run(claimed.run_id)
                elif found == LOST:
                    log.warning("Assistant run %s was taken over by another process", claimed.run_id)
                    self.drop_run(claimed.run_id)
