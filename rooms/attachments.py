"""Files attached to messages: pictures through the avatar pipeline, anything else as it came.

A picture (JPEG, PNG, WebP or GIF by its first bytes) is opened with only those decoders and
the avatar pipeline's pixel limit, turned upright, scaled down to fit `ATTACHMENT_MAX_SIDE`
and re-encoded as WebP under a random name: no EXIF, GPS or other metadata survives.
Generated images from the assistant go through the same function.

Any other file (or a picture Pillow will not take: too many pixels, broken) is kept byte
for byte under a random name in `files/`, with its cleaned name, size and type beside it on
the message (`rooms.filetypes`); `rooms.views.messages.message_file` serves it to the room's
members only, as a download. Both kinds are refused when empty or over ATTACHMENT_MAX_BYTES.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import models
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from PIL import Image

from accounts.avatars import encode_webp, open_image
from rooms import filetypes
from rooms.models import Message

# The first bytes of the picture formats the image pipeline reads.
_PICTURE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")


def make_attachment(upload, *, max_bytes: int | None = None) -> ContentFile:
    """A clean WebP copy of the upload, or ValidationError saying why it was refused."""
    image = open_image(
        upload, max_bytes=max_bytes or settings.AVATAR_MAX_BYTES, max_pixels=settings.AVATAR_MAX_PIXELS
    )
    side = settings.ATTACHMENT_MAX_SIDE
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    return ContentFile(encode_webp(clean), name=f"{secrets.token_urlsafe(16)}.webp")


def attachment_from_bytes(data: bytes) -> ContentFile:
    """The same pipeline for image bytes we did not receive as an upload."""
    return make_attachment(ContentFile(data, name="image"))


@dataclass(frozen=True)
class FileAttachment:
    """A file that is not a picture, ready to be stored as it came (`content`) under a
    random name; `name` is the sender's, cleaned, `file_type` what its extension says."""

    content: File[Any]
    name: str
    size: int
    file_type: str
    sha256: str


def check_size(upload) -> None:
    """ValidationError, saying why, for an empty file or one over ATTACHMENT_MAX_BYTES."""
    limit = settings.ATTACHMENT_MAX_BYTES
    if not upload.size:
        raise ValidationError(_("That file is empty; there is nothing to send."), code="empty_file")
    if upload.size > limit:
        raise ValidationError(
            f"That file is {filesizeformat(upload.size)}; files can be at most {filesizeformat(limit)}.",
            code="too_large",
        )


def _is_picture(upload) -> bool:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    return head.startswith(_PICTURE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def file_attachment(upload) -> FileAttachment:
    """The upload as a file to keep as it is (after `check_size`)."""
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    name = filetypes.clean_file_name(upload.name or "")
    return FileAttachment(upload, name, upload.size, filetypes.guess_type(name), digest.hexdigest())


def read_upload(upload) -> ContentFile | FileAttachment:
    """What an attached file becomes: a re-encoded picture, or a file kept as it came.
    ValidationError (with a message for the sender) for an empty or too large file."""
    check_size(upload)
    if _is_picture(upload):
        try:
            return make_attachment(upload, max_bytes=settings.ATTACHMENT_MAX_BYTES)
        except ValidationError:
            pass  # more pixels than we decode, or broken: it is sent as a file instead
    return file_attachment(upload)


class PendingAttachment:
    """An attachment saved for a message that is about to be stored, and deleted again
    unless the message took it and its transaction committed.

        pending = PendingAttachment(image)
        with pending, transaction.atomic(durable=True):
            ...  # anything here may refuse the post and roll it back
            message = Message.objects.create(..., image=pending.name)
            pending.taken()

    Django has no rollback hook, and a file saved by the model's own save would stay on
    disk when the transaction rolls back; saved here first, its name is known and it goes
    once the block ends without the message (refused, a repeated send, a failed commit).
    The file is kept when the block ends, so the block must be the outermost transaction:
    `durable=True` makes Django refuse (RuntimeError) a caller's atomic block around it,
    whose rollback would come too late to remove the file.
    """

    def __init__(self, content: File[Any] | None, *, field: str = "image") -> None:
        self.content = content
        file_field = Message._meta.get_field(field)
        assert isinstance(file_field, models.FileField)
        self.field = file_field
        self.name: str | None = None
        self._taken = False

    def __enter__(self) -> PendingAttachment:
        if self.content is not None:
            # A file is stored under a random name with no extension: nothing of the
            # sender's name reaches the disk. (An upload on disk is moved, not copied.)
            random_name = self.content.name if self.field.name == "image" else secrets.token_urlsafe(16)
            name = self.field.generate_filename(None, random_name or "image")
            self.name = self.field.storage.save(name, self.content)
        return self

    def taken(self) -> None:
        self._taken = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.name and (exc_type is not None or not self._taken):
            self.field.storage.delete(self.name)


def as_data_url(field) -> str:
    """A stored attachment as a data: URL, for sending it to the model as image input."""
    field.open("rb")
    try:
        data = field.read()
    finally:
        field.close()
    return "data:image/webp;base64," + base64.b64encode(data).decode()
