"""What the assistant is told before it answers in a room.

The prompt holds the room's title and members, the assistant's name and personality, who
asked, and the room's recent messages newest-first until the token budget is spent. Only
the room's own messages go in. Memories go in only in the owner's private room: a shared
room's prompt is built without ever loading anybody's memories.
"""

from django.conf import settings

from assistant.models import AssistantRun, AssistantSettings, Memory
from rooms.attachments import as_data_url
from rooms.models import Membership, Message, Room

# Messages looked at before the budget cuts in; a room's distant past is not needed.
HISTORY_SCAN = 200
MEMORIES_MAX = 100


def estimate_tokens(text: str) -> int:
    """About four characters a token for English, plus a little for the message wrapper."""
    return len(text) // 4 + 4


def _where(room: Room, names: list[str], asker: str) -> str:
    if room.is_private:
        return f"a private one-to-one conversation with {asker}"
    if room.is_direct:
        return f"a direct conversation between {' and '.join(names)}"
    return f"the group chat “{room.title}” with {', '.join(names)}"


def system_prompt(
    room: Room, assistant: AssistantSettings, asker_name: str, names: list[str], memories
) -> str:
    lines = [
        f"You are {assistant.name}, an AI assistant taking part in {_where(room, names, asker_name)} "
        "on Calpico, a chat app.",
        "Each message from a person starts with their name and a colon; do not start yours with a name.",
        "Answer in Markdown, as briefly as the question allows.",
    ]
    if assistant.personality:
        lines.append(f"Your personality, set by the people here: {assistant.personality}")
    if memories:
        lines.append(f"Things {asker_name} asked you to remember:")
        lines.extend(f"- {memory}" for memory in memories)
    lines.append(f"{asker_name} is waiting for your reply to the latest messages.")
    return "\n".join(lines)


def _content(author: str, body: str, image_url: str | None):
    text = f"{author}: {body}"
    if image_url:
        return [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": image_url}},
        ]
    return text


def build_chat_prompt(run: AssistantRun, assistant: AssistantSettings) -> list[dict]:
    """The chat messages for a reply run, oldest first."""
    room = run.room
    asker = run.requested_by
    asker_name = asker.name if asker else "someone"
    names = list(
        Membership.objects.filter(room=room)
        .order_by("joined_at")
        .values_list("user__display_name", "user__username")
    )
    member_names = [display or username for display, username in names]
    memories = []
    if room.is_private and asker is not None and room.owner_id == asker.pk:
        memories = list(Memory.objects.filter(user=asker).values_list("text", flat=True)[:MEMORIES_MAX])
    system = system_prompt(room, assistant, asker_name, member_names, memories)

    budget = settings.ASSISTANT_CONTEXT_TOKENS - estimate_tokens(system)
    # Plain rows, not model instances: this runs before every reply, over up to
    # HISTORY_SCAN messages, on the way to the model's first token.
    recent = (
        Message.objects.filter(room=room, deleted_at__isnull=True)
        .exclude(kind=Message.Kind.SYSTEM)
        .exclude(pk=run.reply_id)  # type: ignore[misc]  # None excludes nothing
        .order_by("-seq")
        .values_list(
            "pk", "kind", "state", "body", "image", "file_name", "author__display_name", "author__username"
        )[:HISTORY_SCAN]
    )
    history: list[dict] = []
    for pk, kind, state, body, image, file_name, display_name, username in recent:
        if file_name:
            # The assistant does not read files; it knows one was sent, and its name.
            body = f"{body}\n[attached file: {file_name}]".strip()
        if kind == Message.Kind.ASSISTANT:
            if state != Message.State.DONE or not body:
                continue  # failed or unfinished replies are not what it said
            entry = {"role": "assistant", "content": body}
            cost = estimate_tokens(body)
        else:
            # The image goes to the model with the message that asked, if it has one.
            with_image = bool(image) and run.trigger_id == pk
            author = (display_name or username) if username else "Deleted account"
            image_url = as_data_url(run.trigger.image) if with_image and run.trigger else None
            entry = {"role": "user", "content": _content(author, body, image_url)}
            cost = estimate_tokens(body) + (300 if with_image else 0)
        if cost > budget and history:
            break
        budget -= cost
        history.append(entry)
    history.reverse()
    return [{"role": "system", "content": system}, *history]


def redacted(prompt: list[dict]) -> list[dict]:
    """The prompt as stored on the run: images replaced by a note, not kept twice."""
    stored = []
    for entry in prompt:
        content = entry["content"]
        if isinstance(content, list):
            content = [
                part if part.get("type") == "text" else {"type": "image_url", "image_url": {"url": "(image)"}}
                for part in content
            ]
        stored.append({**entry, "content": content})
    return stored
