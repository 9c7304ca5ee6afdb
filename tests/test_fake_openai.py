"""The fake OpenAI server, driven by the real ``openai`` SDK (sync and async).

Behaviour of the openai 3.x SDK these tests pin down:

* a stream cut mid-way (``cut_after``) raises ``openai.APIConnectionError`` (not its
  subclass ``APITimeoutError``) from the iteration, after the pieces that did arrive;
  ``__cause__`` is ``httpx2.RemoteProtocolError`` "incomplete chunked read";
* a request that gets no answer (``hang``) raises ``openai.APITimeoutError`` once the
  client's ``timeout`` runs out, and so does a stream stalled mid-way (``gate``);
* HTTP errors raise ``RateLimitError`` (429), ``InternalServerError`` (5xx),
  ``BadRequestError`` (400), ``AuthenticationError`` (401), ``NotFoundError`` (404), with
  ``.code`` / ``.type`` taken from the body's ``error`` object.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from PIL import Image

from tests.fake_openai import DEFAULT_REPLY, FakeOpenAI, split_tokens

KEY = "sk-fake-test"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the room"},
]
PROMPT_WORDS = 3 + 5


@pytest.fixture(scope="module")
def shared_fake():
    with FakeOpenAI(api_key=KEY) as server:
        yield server


@pytest.fixture
def fake(shared_fake):
    """One server for the module (quicker), reset around each test."""
    shared_fake.reset()
    yield shared_fake
    shared_fake.reset()


@pytest.fixture(scope="module")
def shared_client(shared_fake):
    with openai.OpenAI(base_url=shared_fake.base_url, api_key=KEY, max_retries=0, timeout=5) as sdk:
        yield sdk


@pytest.fixture
def client(fake, shared_client):
    return shared_client


def stream_chat(client, **kwargs):
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **kwargs,
    )


def test_split_tokens_keeps_the_text():
    assert split_tokens("Hello from the fake model.") == ["Hello", " from", " the", " fake", " model."]
    for text in ["", "  lead", "trail  ", "a\n\nb c", "one"]:
        assert "".join(split_tokens(text)) == text


def test_stream_with_usage(fake, client):
    chunks = list(stream_chat(client))

    first, *middle, finish, usage = chunks
    assert first.object == "chat.completion.chunk"
    assert first.model == "gpt-4o-mini"
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].finish_reason is None
    pieces = [c.choices[0].delta.content for c in middle]
    assert pieces == split_tokens(DEFAULT_REPLY)
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in middle)
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert usage.usage.prompt_tokens == PROMPT_WORDS
    assert usage.usage.completion_tokens == len(pieces)
    assert usage.usage.total_tokens == PROMPT_WORDS + len(pieces)
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_has_no_usage_chunk(fake, client):
    fake.reply("Just two")
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["", "Just", " two", None]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


async def test_async_stream_with_usage(fake):
    fake.queue(tokens=["Bon", "jour", "!"])
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
    assert pieces == ["Bon", "jour", "!"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS, 3)


def test_non_streaming(fake, client):
    fake.reply("A whole answer.")
    completion = client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4.1"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "A whole answer."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_WORDS
    assert completion.usage.completion_tokens == 3


def test_queue_is_fifo_then_default(fake, client):
    fake.queue(text="First.")
    fake.queue(tokens=["Sec", "ond."], times=2)

    def ask():
        return client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content

    assert [ask(), ask(), ask(), ask()] == ["First.", "Second.", "Second.", DEFAULT_REPLY]


def test_rate_limit(fake, client):
    fake.queue(status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as caught:
        stream_chat(client)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "rate_limit_error"
    assert error.response.headers["retry-after"] == "2"
    assert error.request_id.startswith("req_")


def test_sdk_retries_honour_retry_after_ms(fake):
    fake.queue(status=429, retry_after=0.01)
    with openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=1) as sdk:
        completion = sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert len(fake.chat_requests()) == 2


def test_server_error(fake, client):
    fake.queue(status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        stream_chat(client)
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


async def test_server_error_async(fake):
    fake.queue(status=503, message="Overloaded, try later.")
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        with pytest.raises(openai.InternalServerError, match="Overloaded, try later"):
            await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_content_policy_refusal(fake, client):
    fake.queue(status=400)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.code == "content_policy_violation"
    assert "safety system" in caught.value.message


def test_hang_times_out(fake, client):
    fake.queue(hang=True)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        stream_chat(client, timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert len(fake.wait_for_requests(1)) == 1


async def test_hang_times_out_async(fake):
    fake.queue(hang=True)
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=0.3) as sdk:
        with pytest.raises(openai.APITimeoutError):
            await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_release_lets_a_hanging_request_answer(fake, client):
    fake.queue(hang=True, text="Finally.")
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(client.chat.completions.create(model="m", messages=MESSAGES))
    )
    worker.start()
    fake.wait_for_requests(1)
    time.sleep(0.05)
    assert answers == []
    fake.release()
    worker.join(timeout=5)
    assert answers[0].choices[0].message.content == "Finally."


def test_cut_stream_raises_connection_error(fake, client):
    fake.queue(tokens=["one", " two", " three", " four"], cut_after=2)
    pieces = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in stream_chat(client):
            pieces.append(chunk.choices[0].delta.content)
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert "incomplete chunked read" in str(caught.value.__cause__)
    assert pieces == ["", "one", " two"]


async def test_cut_stream_raises_connection_error_async(fake):
    fake.queue(cut_after=1)
    pieces = []
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                pieces.append(chunk.choices[0].delta.content)
    assert pieces == ["", "Hello"]


def test_cut_non_streamed_request_is_a_connection_error(fake, client):
    fake.queue(cut_after=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)


def test_gate_holds_the_stream_after_the_first_piece(fake, client):
    gate = threading.Event()
    fake.queue(tokens=["a", "b", "c"], gate=gate)
    pieces = []

    def consume():
        for chunk in stream_chat(client):
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content)

    worker = threading.Thread(target=consume)
    worker.start()
    deadline = time.monotonic() + 5
    while len(pieces) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    assert pieces == ["", "a"]
    gate.set()
    worker.join(timeout=5)
    assert pieces == ["", "a", "b", "c", None]


def test_stalled_stream_times_out(fake, client):
    fake.queue(gate=threading.Event())
    pieces = []
    with pytest.raises(openai.APITimeoutError):
        for chunk in stream_chat(client, timeout=0.3):
            pieces.append(chunk.choices[0].delta.content)
    assert pieces == ["", "Hello"]


def test_token_interval_and_first_token_delay():
    with FakeOpenAI(token_interval=0.02) as fake:
        fake.queue(tokens=list("abcdef"), first_token_delay=0.1)
        with openai.OpenAI(base_url=fake.base_url, api_key="any", max_retries=0) as sdk:
            started = time.monotonic()
            arrivals = []
            for chunk in stream_chat(sdk):
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.monotonic() - started)
    assert arrivals[0] >= 0.1
    assert arrivals[-1] - arrivals[0] >= 5 * 0.02 * 0.9


def test_images_b64(fake, client):
    result = client.images.generate(model="gpt-image-1", prompt="a red fox", n=2, response_format="b64_json")
    assert len(result.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.format == "PNG"
    assert image.size == (64, 64)
    assert "a red fox" in result.data[0].revised_prompt
    assert fake.image_requests()[0]["prompt"] == "a red fox"


def test_images_default_and_url_format(fake, client):
    default = client.images.generate(prompt="a cat")
    assert base64.b64decode(default.data[0].b64_json).startswith(b"\x89PNG")
    linked = client.images.generate(prompt="a cat", response_format="url")
    with urllib.request.urlopen(linked.data[0].url, timeout=5) as response:
        assert Image.open(io.BytesIO(response.read())).size == (64, 64)


def test_image_failures(fake, client):
    fake.queue_image(status=500)
    fake.queue_image(status=400)
    with pytest.raises(openai.InternalServerError):
        client.images.generate(prompt="x")
    with pytest.raises(openai.BadRequestError):
        client.images.generate(prompt="x")
    assert client.images.generate(prompt="x").data[0].b64_json


def test_requests_are_recorded(fake, client):
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(stream_chat(client))
    client.models.list()

    requests = fake.wait_for_requests(3)
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]
    assert requests[0].headers["authorization"] == f"Bearer {KEY}"
    bodies = fake.chat_requests()
    assert [b["messages"] for b in bodies] == [MESSAGES, MESSAGES]
    assert bodies[1]["stream"] is True
    assert bodies[1]["stream_options"] == {"include_usage": True}
    fake.clear()
    assert fake.requests == []
    with pytest.raises(TimeoutError):
        fake.wait_for_requests(1, timeout=0.05)


def test_wrong_or_missing_api_key(fake):
    with (
        openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong-key", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    # Rejected requests are recorded too.
    assert fake.requests[0].headers["authorization"] == "Bearer sk-wrong-key"
    assert fake.chat_requests()[0]["messages"] == MESSAGES

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(fake.base_url + "/models", timeout=5)
    assert missing.value.code == 401
    assert "API key" in json.load(missing.value)["error"]["message"]


def test_any_key_is_accepted_without_api_key():
    with (
        FakeOpenAI() as fake,
        openai.OpenAI(base_url=fake.base_url, api_key="whatever", max_retries=0) as sdk,
    ):
        assert [m.id for m in sdk.models.list()] == ["gpt-4o-mini", "gpt-image-1"]


def test_models_and_unknown_paths(fake, client):
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")
    request = urllib.request.Request(
        fake.base_url + "/nothing/here", headers={"Authorization": f"Bearer {KEY}"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 404
    error = json.load(caught.value)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] == "Invalid URL (GET /v1/nothing/here)"


def test_stop_does_not_hang_on_hanging_or_gated_requests():
    fake = FakeOpenAI().start()
    fake.queue(hang=True)
    fake.queue(gate=threading.Event())
    errors = []

    def call():
        with openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=10) as sdk:
            try:
                list(stream_chat(sdk))
            except openai.APIConnectionError as error:
                errors.append(error)

    workers = [threading.Thread(target=call) for _ in range(2)]
    for worker in workers:
        worker.start()
    fake.wait_for_requests(2)
    time.sleep(0.05)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 1
    for worker in workers:
        worker.join(timeout=5)
    assert len(errors) == 2
    assert not fake.running


async def test_concurrent_streams_are_served_at_the_same_time(fake):
    # Overlap, not wall-clock time: every stream has begun before any has ended. A server that
    # served one stream after another cannot pass this however fast or loaded the machine is.
    fake.token_interval = 0.05  # undone by reset() in the fixture

    async def one(sdk, n):
        stream = await sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"stream {n}"}], stream=True
        )
        parts, first, last = [], None, None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                last = time.monotonic()
                first = first or last
                parts.append(chunk.choices[0].delta.content)
        return "".join(parts), first, last

    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=10) as sdk:
        results = await asyncio.gather(*(one(sdk, n) for n in range(8)))
    assert [text for text, _, _ in results] == [DEFAULT_REPLY] * 8
    assert max(first for _, first, _ in results) < min(last for _, _, last in results)
    assert sorted(b["messages"][0]["content"] for b in fake.chat_requests()) == [
        f"stream {n}" for n in range(8)
    ]


def test_reset_restores_the_defaults(fake, client):
    fake.reply("Changed.")
    fake.first_token_delay = 5
    fake.queue(status=500)
    fake.reset()
    assert fake.first_token_delay == 0
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == (
        DEFAULT_REPLY
    )
