"""Images attached to messages: the avatar pipeline (accounts.avatars), kept whole.

The upload is opened with only the JPEG, PNG, WebP and GIF decoders and the same size and
pixel limits as profile pictures, turned upright, scaled down to fit
`ATTACHMENT_MAX_SIDE` and re-encoded as WebP under a random name: no EXIF, GPS or other
metadata survives. Generated images from the assistant go through the same function.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from PIL import Image

from accounts.avatars import encode_webp, open_image
from rooms.models import Message


def make_attachment(upload) -> ContentFile:
    """A clean WebP copy of the upload, or ValidationError saying why it was refused."""
    image = open_image(upload, max_bytes=settings.AVATAR_MAX_BYTES, max_pixels=settings.AVATAR_MAX_PIXELS)
    side = settings.ATTACHMENT_MAX_SIDE
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    clean = Image.new(image.mode, image.size)
    clean.paste(image)
    return ContentFile(encode_webp(clean), name=f"{secrets.token_urlsafe(16)}.webp")


def attachment_from_bytes(data: bytes) -> ContentFile:
    """The same pipeline for image bytes we did not receive as an upload."""
    return make_attachment(ContentFile(data, name="image"))


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

    def __init__(self, content: File[Any] | None) -> None:
        self.content = content
        self.name: str | None = None
        self._taken = False

    def __enter__(self) -> PendingAttachment:
        if self.content is not None:
            field = Message._meta.get_field("image")
            name = field.generate_filename(None, self.content.name or "image")
            self.name = field.storage.save(name, self.content)
        return self

    def taken(self) -> None:
        self._taken = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.name and (exc_type is not None or not self._taken):
            Message._meta.get_field("image").storage.delete(self.name)


def as_data_url(field) -> str:
    """A stored attachment as a data: URL, for sending it to the model as image input."""
    field.open("rb")
    try:
        data = field.read()
    finally:
        field.close()
    return "data:image/webp;base64," + base64.b64encode(data).decode()
