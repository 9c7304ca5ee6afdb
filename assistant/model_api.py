"""The one place that talks to the model: any OpenAI-compatible API, through the openai SDK.

Only the SDK's public API is used: the client, its `post()` for requests the SDK has no
typed method for (its README's "undocumented requests"), `images.generate`, and its
exception classes. pyproject.toml pins the SDK to the range the tests ran against
(tests/fake_openai.py plays the API).
"""

import asyncio
import base64
import urllib.request
from typing import Any

import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk

ChatStream = openai.AsyncStream[ChatCompletionChunk]


class StreamCut(Exception):
    """The answer ended without saying it had finished."""


def make_client() -> openai.AsyncOpenAI:
    """A client for the configured API. Building one loads the CA bundle (tens of ms) and
    each keeps its connections open for reuse: the runner keeps one for its life."""
    key = settings.OPENAI_API_KEY
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=settings.OPENAI_BASE_URL or None,
        timeout=settings.ASSISTANT_TIMEOUT_SECONDS,
        max_retries=0,  # a failed run shows Retry; silent retries would only look like a hang
        # Sent with every request, `post()` included (the SDK adds its own authentication
        # only to its typed methods).
        default_headers={"Authorization": f"Bearer {key}"},
    )


async def open_chat_stream(
    client: openai.AsyncOpenAI,
    *,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int = 0,
    tools: list[dict[str, Any]] | None = None,
) -> ChatStream:
    """Start streaming a chat completion; the caller iterates the chunks and closes it.

    Not `chat.completions.create`: that first walks every message of the prompt against
    the parameter types, about 0.15 ms a message on the event loop (30-40 ms for a
    200-message history, stalling every socket of the process). The prompt is plain JSON
    already (assistant/prompt.py), so it goes as the request body as it is.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if max_tokens:
        body["max_tokens"] = max_tokens
    if tools:
        body["tools"] = tools
    return await client.post(
        "/chat/completions", body=body, cast_to=ChatCompletion, stream=True, stream_cls=ChatStream
    )


async def generate_image(client: openai.AsyncOpenAI, *, model: str, prompt: str) -> bytes:
    """One picture for `prompt`, as the image file's bytes."""
    extra: dict[str, Any] = {} if model.startswith("gpt-image") else {"response_format": "b64_json"}
    result = await client.images.generate(
        model=model, prompt=prompt, size=settings.ASSISTANT_IMAGE_SIZE, n=1, **extra
    )
    item = result.data[0] if result.data else None
    if item is not None and item.b64_json:
        return base64.b64decode(item.b64_json)
    if item is not None and item.url:
        return await asyncio.to_thread(_download, item.url)
    raise StreamCut()


def _download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise StreamCut()
    with urllib.request.urlopen(url, timeout=settings.ASSISTANT_TIMEOUT_SECONDS) as response:  # noqa: S310
        data: bytes = response.read(settings.AVATAR_MAX_BYTES * 4)
        return data


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(code, sentence for the room) for what went wrong talking to the model."""
    if isinstance(exc, openai.APITimeoutError):
        seconds = int(settings.ASSISTANT_TIMEOUT_SECONDS)
        return "timeout", f"The AI service did not answer within {seconds} seconds."
    if isinstance(exc, openai.APIConnectionError):
        return "connection", "Could not reach the AI service."
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited", "The AI service is rate limiting requests right now. Try again in a minute."
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth", "The AI service refused the server’s API key; an administrator needs to check it."
    if isinstance(exc, openai.BadRequestError):
        return "refused", "The AI service refused this request."
    if isinstance(exc, openai.NotFoundError):
        return "not_found", "The AI service does not know the configured model."
    if isinstance(exc, openai.APIStatusError):
        return "server_error", f"The AI service had an error ({exc.status_code})."
    if isinstance(exc, StreamCut):
        return "cut_off", "The reply was cut off before it finished."
    return "error", "Something went wrong while the assistant was answering."
