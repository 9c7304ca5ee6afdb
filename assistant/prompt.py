"""What the assistant is told before it answers in a room.

The prompt holds the room's title and members, the assistant's name and personality, who
asked, and the room's recent messages newest-first until the token budget is spent. Only
the room's own messages go in. Memories go in only in the owner's private room: a shared
room's prompt is built without ever loading anybody's memories.
"""

from django.conf import settings

from assistant.files import read_for_assistant
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
    room: Room,
    assistant: AssistantSettings,
    asker_name: str,
    names: list[str],
    memories,
    unprompted: str = "",
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
    if unprompted:
        # Nobody asked: it decided to join in (assistant/decider.py), for this reason.
        lines.append(f"Nobody asked you; you chose to join in because: {unprompted}")
        lines.append("Add what is useful to the latest messages in a few sentences; do not repeat others.")
    else:
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


def build_chat_prompt(
    run: AssistantRun, assistant: AssistantSettings, notes: list[str] | None = None
) -> list[dict]:
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
    unprompted = (run.reason or "something useful to add") if run.unprompted else ""
    system = system_prompt(room, assistant, asker_name, member_names, memories, unprompted)

    prompt = [{"role": "system", "content": system}]
    budget = settings.ASSISTANT_CONTEXT_TOKENS - estimate_tokens(system)
    # The rolling summary of older history (assistant/summary.py): this room's own, and
    # the messages it covers are not sent again. Never in a private room.
    after_seq = 0
    if not room.is_private and assistant.summary_through_seq:
        after_seq = assistant.summary_through_seq
        if assistant.summary:
            summary = f"Summary of this room's earlier conversation:\n{assistant.summary}"
            prompt.append({"role": "system", "content": summary})
            budget -= estimate_tokens(summary)
    return [*prompt, *room_history(run, budget, after_seq=after_seq, notes=notes)]


def room_history(
    run: AssistantRun, budget: int, *, images: bool = True, after_seq: int = 0, notes: list[str] | None = None
) -> list[dict]:
    """The room's recent messages as chat turns, oldest first, newest kept within `budget`
    (estimated tokens). Only this room's messages; never anybody's memories. `images`: the
    image and the file of the message that asked go in (a reply; what of the file did not
    fit is added to `notes`), or none do (a decision)."""
    room = run.room
    # Plain rows, not model instances: this runs before every reply, over up to
    # HISTORY_SCAN messages, on the way to the model's first token.
    recent = (
        Message.objects.filter(room=room, deleted_at__isnull=True, seq__gt=after_seq)
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
            # It knows a file was sent, and its name; the file of the message it answers,
            # it reads (assistant/files.py).
            body = f"{body}\n[attached file: {file_name}]".strip()
            if images and run.trigger_id == pk and run.trigger is not None:
                body += _file_text(run.trigger, budget // 2, notes)
        if kind == Message.Kind.ASSISTANT:
            if state != Message.State.DONE or not body:
                continue  # failed or unfinished replies are not what it said
            entry = {"role": "assistant", "content": body}
            cost = estimate_tokens(body)
        else:
            # The image goes to the model with the message that asked, if it has one.
            with_image = images and bool(image) and run.trigger_id == pk
            author = (display_name or username) if username else "Deleted account"
            image_url = as_data_url(run.trigger.image) if with_image and run.trigger else None
            entry = {"role": "user", "content": _content(author, body, image_url)}
            cost = estimate_tokens(body) + (300 if with_image else 0)
        if cost > budget and history:
            break
        budget -= cost
        history.append(entry)
    history.reverse()
    return history


def _file_text(message: Message, budget: int, notes: list[str] | None) -> str:
    """The attached file's text for the prompt, within `budget` tokens (at most
    ASSISTANT_FILE_TOKENS); "" for a file it cannot read."""
    if not message.file:
        return ""
    limit = min(budget, settings.ASSISTANT_FILE_TOKENS) * 4
    read = read_for_assistant(message.file, message.file_name, message.file_type, max_chars=max(limit, 0))
    if read is None:
        return ""
    text = f'\n<file name="{message.file_name}">\n{read.text}\n</file>'
    if read.note:
        if notes is not None:
            notes.append(read.note)
        text += f"\n(Only part of the file fit: {read.note} Say so briefly in your answer.)"
    return text


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


def decision_prompt(run: AssistantRun, assistant: AssistantSettings) -> list[dict]:
    """What the model is shown to decide whether to take part (assistant/decider.py): the
    room, its personality, its name and the recent conversation. A shared room's only:
    never anybody's memories."""
    room = run.room
    names = [
        display or username
        for display, username in Membership.objects.filter(room=room)
        .order_by("joined_at")
        .values_list("user__display_name", "user__username")
    ]
    lines = [
        f"You are {assistant.name}, an AI assistant taking part in {_where(room, names, '')} on Calpico.",
        "Nobody asked you anything directly. Decide whether to take part now, as a tactful member would:",
        "- respond: only when you have something clearly useful to add, such as a question put to the "
        "group that you can answer, a request for help, or a factual mistake that matters;",
        "- react: acknowledge a message with one emoji, sparingly (good news, thanks, a joke);",
        "- silent: small talk, people talking among themselves, or nothing to add. This is the usual choice.",
    ]
    if assistant.personality:
        lines.append(f"Your personality, set by the people here: {assistant.personality}")
    lines.append(
        'Answer with JSON only: {"action": "respond" | "react" | "silent", "emoji": one emoji when '
        'reacting, optionally one when responding (added to the message you answer), else "", '
        '"reason": one short line saying why}.'
    )
    system = "\n".join(lines)
    budget = settings.ASSISTANT_DECIDER_CONTEXT_TOKENS - estimate_tokens(system)
    return [{"role": "system", "content": system}, *room_history(run, budget, images=False)]
