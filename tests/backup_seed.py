"""Run in a server's environment: a small install with everything a backup must keep."""

import io
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "calpico.settings")
django.setup()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from PIL import Image  # noqa: E402

from accounts import services as accounts  # noqa: E402
from accounts.models import User  # noqa: E402
from assistant.models import Memory  # noqa: E402
from rooms import services  # noqa: E402
from rooms.attachments import make_attachment  # noqa: E402


def picture(colour: tuple[int, int, int]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, format="PNG")
    return SimpleUploadedFile("picture.png", buffer.getvalue(), content_type="image/png")


def seed() -> None:
    alice = User.objects.create_user("alice", password="correct horse battery staple", display_name="Alice")
    bob = User.objects.create_user("bob", password="correct horse battery staple")
    accounts.do_set_avatar(alice, picture((200, 40, 40)))
    accounts.do_set_avatar(bob, picture((40, 40, 200)))
    group = services.do_create_group(alice, "Trip planning ✈", [bob])
    alice_in = group.memberships.get(user=alice)
    bob_in = group.memberships.get(user=bob)
    first = services.do_post_message(alice_in, "Where do we go? **Somewhere warm**").message
    services.do_post_message(bob_in, "Lisbon!", reply_to_id=first.pk)
    services.do_post_message(bob_in, "", image=make_attachment(picture((10, 160, 90))))
    edited = services.do_post_message(alice_in, "typo").message
    services.do_edit_message(alice, edited, "no typo")
    direct = services.do_open_direct_room(alice, bob)
    services.do_post_message(direct.memberships.get(user=alice), "Just us 👋")
    Memory.objects.create(user=alice, text="Prefers window seats")


if __name__ == "__main__":
    seed()
    sys.stdout.write("seeded\n")
