"""Building a person's data export: one ZIP, written under EXPORTS_ROOT only.

What goes in (the README inside says the same, for the person):
- profile.json and avatar.webp: the account as they set it up, and whom they blocked;
- rooms.json: the rooms they are in (a direct room is named by the other person);
- messages.json and messages.md: every message they wrote that is not deleted, with its
  room, time and the number of the message it answered; their images under images/ and
  the other files they attached under files/;
- my-assistant.json and my-assistant.md: their private chat with the assistant, both sides;
- memories.json: what they asked the assistant to remember.

Other people's messages are left out, even in rooms the person is in: they are the other
people's to take. Only the assistant's replies in the person's own private chat are in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Block, User
from assistant.models import Memory, PrivateAnswer
from jobs.queue import JobContext
from privacy.models import DataExport
from rooms import filetypes
from rooms.models import Membership, Message, Room

PROGRESS_EVERY = 200  # messages between progress writes

README = """# Your Calpico data

Exported for @{username} on {date} (UTC). This file explains what is here.

- `profile.json`: your username, display name, email address, when you joined, your
  settings, and the accounts you blocked.
- `avatar.webp`: your profile picture, if you set one.
- `rooms.json`: the conversations you are in: groups by name, direct conversations by the
  other person's name, with when you joined and your role.
- `messages.json`: every message you wrote that you have not deleted, with its
  conversation, its number there, when you wrote it (and edited it), the number of the
  message it answered, and its text as you typed it (markdown).
- `messages.md`: the same, to read: one section per conversation, oldest first.
- `images/`: the pictures you attached to those messages, named by the message's id.
- `files/`: the other files you attached to them (documents, archives...), named by the
  message's id and the file's name (`file` in `messages.json`).
- `my-assistant.json`, `my-assistant.md`: your private chat with the assistant, both your
  messages and its replies.
- `memories.json`: what you asked the assistant to remember.
- `private-answers.json`: the answers the assistant gave you alone inside conversations
  (Catch me up, Ask privately) that you have not shared or discarded, with your question.

Not included: messages other people wrote, even in conversations you are in (they are
theirs to export), and other people's pictures. Deleted messages are not included:
deleting a message removes its text from the server.
"""


def _room_names(user: User, rooms: Iterable[Room]) -> dict[int, str]:
    rooms = list(rooms)
    names = {room.pk: room.title or "Direct message" for room in rooms}
    direct = [room.pk for room in rooms if room.is_direct]
    others = Membership.objects.filter(room_id__in=direct).exclude(user=user).select_related("user")
    for membership in others:
        names[membership.room_id] = membership.user.name
    return names


def _message_row(message: Message, room_name: str) -> dict[str, Any]:
    return {
        "id": message.pk,
        "room_id": message.room_id,
        "room": room_name,
        "number": message.seq,
        "author": message.author.username if message.author else message.sender_name,
        "written_at": message.created_at.isoformat(),
        "edited_at": message.edited_at.isoformat() if message.edited_at else None,
        "answering": message.reply_to.seq if message.reply_to_id and message.reply_to else None,
        "text": message.body,
        "image": f"images/{message.pk}.webp" if message.image else None,
        "file": _file_name(message) if message.file else None,
    }


def _file_name(message: Message) -> str:
    name = filetypes.clean_file_name(message.file_name or "file").replace("/", "_") or "file"
    return f"files/{message.pk}-{name}"


def _add_stored(archive: zipfile.ZipFile, field: Any, name: str) -> bool:
    """Copy a stored file into the ZIP a chunk at a time; False if it is gone."""
    try:
        with field.open("rb") as source, archive.open(name, "w", force_zip64=True) as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
    except FileNotFoundError:
        return False
    return True


def _markdown(title: str, rows: list[dict[str, Any]]) -> str:
    lines = [f"# {title}", ""]
    current = None
    for row in rows:
        if row["room"] != current:
            current = row["room"]
            lines += [f"## {current}", ""]
        when = row["written_at"][:16].replace("T", " ")
        lines.append(f"**{row['author']}**, {when} UTC (#{row['number']}):")
        lines.append("")
        lines.append(row["text"] or ("[image]" if row["image"] else ""))
        if row["image"]:
            lines.append(f"![image]({row['image']})")
        if row.get("file"):
            lines.append(f"[{row['file'].split('-', 1)[1]}]({row['file']})")
        lines.append("")
    return "\n".join(lines) + "\n"


def export_path(export: DataExport) -> Path:
    """Where an export's ZIP is: under EXPORTS_ROOT, whatever its fields say."""
    root = Path(settings.EXPORTS_ROOT).resolve()
    path = (root / export.relative_path).resolve()
    if not path.is_relative_to(root):
        raise ValueError("An export's file must be under EXPORTS_ROOT.")
    return path


def build(export: DataExport, context: JobContext) -> Path:
    """Write the export's ZIP (a partial file renamed at the end) and return its path."""
    user = export.user
    path = export_path(export)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Its own temporary file in the same directory: two processes building one export (a
    # job taken again after a stale heartbeat) never write into each other's.
    descriptor, partial_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".partial", dir=path.parent)
    os.close(descriptor)
    partial = Path(partial_name)
    memberships = list(Membership.objects.filter(user=user).select_related("room").order_by("joined_at"))
    private = Room.objects.filter(kind=Room.Kind.PRIVATE, owner=user).first()
    names = _room_names(user, [m.room for m in memberships])
    written = (
        Message.objects.filter(
            author=user, deleted_at__isnull=True, room__kind__in=[Room.Kind.DIRECT, Room.Kind.GROUP]
        )
        .select_related("author", "reply_to")
        .order_by("room_id", "seq")
    )
    total = max(written.count(), 1)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            now = timezone.now()
            archive.writestr(
                "README.md", README.format(username=user.username, date=now.strftime("%Y-%m-%d %H:%M"))
            )
            profile = {
                "username": user.username,
                "display_name": user.display_name,
                "email": user.email,
                "date_joined": user.date_joined.isoformat(),
                "last_login": user.last_login.isoformat() if user.last_login else None,
                "desktop_notifications": user.desktop_notifications,
                "read_receipts": user.read_receipts,
                "push_show_text": user.push_show_text,
                "email_missed": user.email_missed,
                # The devices notified when Calpico is closed; their push addresses and keys
                # are the browser's, not the person's.
                "push_devices": [
                    {
                        "browser": device.browser,
                        "added_at": device.created_at.isoformat(),
                        "last_used_at": device.last_used_at.isoformat(),
                    }
                    for device in user.push_subscriptions.order_by("created_at")
                ],
                "blocked": sorted(
                    Block.objects.filter(blocker=user).values_list("blocked__username", flat=True)
                ),
            }
            archive.writestr("profile.json", json.dumps(profile, indent=2, ensure_ascii=False))
            if user.avatar_large:
                with user.avatar_large.open("rb") as picture:
                    archive.writestr("avatar.webp", picture.read())
            rooms = [
                {
                    "id": m.room_id,
                    "kind": m.room.kind,
                    "name": names.get(m.room_id, m.room.title),
                    "joined_at": m.joined_at.isoformat(),
                    "role": "owner" if m.room.owner_id == user.pk else m.role,
                    "muted": m.muted,
                }
                for m in memberships
                if not m.room.is_private
            ]
            archive.writestr("rooms.json", json.dumps(rooms, indent=2, ensure_ascii=False))

            rows = []
            for done, message in enumerate(written.iterator(chunk_size=500), start=1):
                rows.append(_message_row(message, names.get(message.room_id, "")))
                if message.image:
                    try:
                        with message.image.open("rb") as image:
                            archive.writestr(f"images/{message.pk}.webp", image.read())
                    except FileNotFoundError:
                        rows[-1]["image"] = None
                if message.file and not _add_stored(archive, message.file, rows[-1]["file"]):
                    rows[-1]["file"] = None
                if done % PROGRESS_EVERY == 0:
                    context.check()
                    DataExport.objects.filter(pk=export.pk).update(progress=min(90, 5 + 85 * done // total))
            archive.writestr("messages.json", json.dumps(rows, indent=2, ensure_ascii=False))
            archive.writestr("messages.md", _markdown("Messages you wrote", rows))

            chat = []
            if private is not None:
                messages = (
                    Message.objects.filter(room=private, deleted_at__isnull=True)
                    .exclude(kind=Message.Kind.SYSTEM)
                    .select_related("author", "reply_to")
                    .order_by("seq")
                )
                chat = [_message_row(message, "My assistant") for message in messages]
                for message in messages:
                    if message.image:
                        try:
                            with message.image.open("rb") as image:
                                archive.writestr(f"images/{message.pk}.webp", image.read())
                        except FileNotFoundError:
                            pass
                    if message.file:
                        _add_stored(archive, message.file, _file_name(message))
            archive.writestr("my-assistant.json", json.dumps(chat, indent=2, ensure_ascii=False))
            archive.writestr("my-assistant.md", _markdown("My assistant", chat))
            memories = [
                {
                    "text": memory.text,
                    "created_at": memory.created_at.isoformat(),
                    "updated_at": memory.updated_at.isoformat(),
                }
                for memory in Memory.objects.filter(user=user).order_by("created_at")
            ]
            archive.writestr("memories.json", json.dumps(memories, indent=2, ensure_ascii=False))
            answers = [
                {
                    "conversation": names.get(answer.room_id, ""),
                    "kind": answer.kind,
                    "question": answer.question,
                    "answer": answer.body,
                    "state": answer.state,
                    "created_at": answer.created_at.isoformat(),
                }
                for answer in PrivateAnswer.objects.filter(user=user).order_by("id")
            ]
            archive.writestr("private-answers.json", json.dumps(answers, indent=2, ensure_ascii=False))
        os.chmod(partial, 0o600)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
