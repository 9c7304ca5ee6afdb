"""Images in rooms: attached by members, made with /image, seen only by the room."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from assistant import runner
from assistant.models import AssistantRun
from rooms.models import Message
from tests.conftest import image_bytes


def attach(client, room, data: bytes, *, body="look at this", name="photo.jpg", content_type="image/jpeg"):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    return client.post(reverse("rooms:post_message", args=[room.pk]), {"body": body, "image": upload})


def stored_image(message) -> Image.Image:
    with message.image.open("rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image


def test_a_member_attaches_an_image_to_a_message(alice_client, group):
    response = attach(alice_client, group, image_bytes("JPEG", size=(640, 480)))
    assert response.status_code == 302
    message = Message.objects.get(room=group, kind="text")
    image = stored_image(message)
    assert image.format == "WEBP" and image.size == (640, 480)
    assert "photo" not in message.image.name
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert reverse("rooms:message_image", args=[group.pk, message.pk]) in page


def test_an_image_alone_needs_no_text(alice_client, group):
    assert attach(alice_client, group, image_bytes("PNG"), body="", name="a.png").status_code == 302
    message = Message.objects.get(room=group, kind="text")
    assert message.body == "" and message.preview == "Image"


def test_large_images_are_scaled_to_2048_and_lose_their_metadata(alice_client, group):
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # camera make
    attach(alice_client, group, image_bytes("JPEG", size=(4000, 1000), exif=exif.tobytes()))
    message = Message.objects.get(room=group, kind="text")
    image = stored_image(message)
    assert image.size == (2048, 512)
    assert "exif" not in image.info
    with message.image.open("rb") as fh:
        assert b"SpyCam" not in fh.read()


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg"),
        (b"GIF89a" + b"\0" * 20, "broken.gif"),
        (b"\0" * (5 * 1024 * 1024 + 1), "huge.png"),
    ],
)
def test_what_is_not_a_picture_we_read_is_sent_as_a_file(alice_client, group, data, name):
    """Any file may be attached: one the picture pipeline refuses is kept as a file."""
    response = attach(alice_client, group, data, body="my holiday", name=name, content_type="image/png")
    assert response.status_code == 302
    message = Message.objects.get(room=group, kind="text")
    assert not message.image and message.file_name == name and message.file_size == len(data)
    with message.file.open("rb") as stored:
        assert stored.read() == data


def test_a_picture_with_more_pixels_than_we_decode_is_sent_as_a_file(settings, alice_client, group):
    settings.AVATAR_MAX_PIXELS = 10_000
    attach(
        alice_client,
        group,
        image_bytes("PNG", size=(300, 200)),
        name="panorama.png",
        content_type="image/png",
    )
    message = Message.objects.get(room=group, kind="text")
    assert not message.image and message.file_name == "panorama.png" and message.file_type == "image/png"


def test_message_images_are_for_the_rooms_members_only(alice_client, mallory_client, group):
    attach(alice_client, group, image_bytes("PNG"), name="a.png")
    message = Message.objects.get(room=group, kind="text")
    url = reverse("rooms:message_image", args=[group.pk, message.pk])
    response = alice_client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert mallory_client.get(url).status_code == 404
    # Not through the general media URL either, even knowing the random name.
    assert mallory_client.get(f"/media/{message.image.name}").status_code == 404


def test_image_makes_a_picture_for_everyone(fake_openai, alice_client, bob_client, group):
    response = alice_client.post(
        reverse("rooms:post_message", args=[group.pk]), {"body": "/image a red fox in the snow"}
    )
    assert response.status_code == 302
    runner.run_pending()
    run = AssistantRun.objects.get()
    assert run.kind == "image" and run.status == "done" and run.model == "gpt-image-1"
    (request,) = fake_openai.image_requests()
    assert request["prompt"] == "a red fox in the snow"
    reply = run.reply
    assert reply.is_assistant and reply.image and stored_image(reply).format == "WEBP"
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert reverse("rooms:message_image", args=[group.pk, reply.pk]) in page
    assert "Image made by Assistant" in page


@pytest.mark.parametrize(
    ("size", "shown"),
    [((640, 480), (420, 315)), ((600, 1200), (180, 360)), ((300, 200), (300, 200))],
)
def test_an_image_keeps_its_size_and_the_page_reserves_its_space(alice_client, group, size, shown):
    """Width and height are stored at upload and written on the <img>, fitted to the
    420 x 360 box it is shown in, so the room does not shift when the picture arrives."""
    attach(alice_client, group, image_bytes("JPEG", size=size))
    message = Message.objects.get(room=group, kind="text")
    assert (message.image_width, message.image_height) == size
    page = alice_client.get(group.get_absolute_url()).content.decode()
    src = reverse("rooms:message_image", args=[group.pk, message.pk])
    assert f'<img src="{src}" width="{shown[0]}" height="{shown[1]}"' in page


def test_a_picture_made_by_the_assistant_keeps_its_size(fake_openai, alice_client, group):
    alice_client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "/image a red fox"})
    runner.run_pending()
    reply = AssistantRun.objects.get().reply
    reply.refresh_from_db()
    assert (reply.image_width, reply.image_height) == stored_image(reply).size == (64, 64)
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert f'{reverse("rooms:message_image", args=[group.pk, reply.pk])}" width="64" height="64"' in page


def test_image_works_whatever_the_reply_mode(fake_openai, alice, alice_client, group):
    from assistant.services import do_update_assistant

    do_update_assistant(alice, group, name="Assistant", personality="", reply_mode="off")
    alice_client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "/image a boat"})
    runner.run_pending()
    assert AssistantRun.objects.get().status == "done"


def test_image_without_a_prompt_is_refused_and_kept(alice_client, group):
    response = alice_client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "/image   "})
    assert response.status_code == 422
    assert "Say what to draw" in response.content.decode()
    assert not Message.objects.filter(room=group, kind="text").exists()


def test_a_failed_image_shows_the_error(fake_openai, alice_client, group):
    fake_openai.queue_image(status=400)
    alice_client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "/image something"})
    runner.run_pending()
    run = AssistantRun.objects.get()
    assert run.status == "failed" and run.error_code == "refused"
    assert run.reply.state == "failed" and "refused" in run.reply.note


def test_an_image_that_mentions_the_assistant_is_sent_as_image_input(fake_openai, alice_client, group):
    attach(alice_client, group, image_bytes("PNG"), body="@assistant what colour is this?", name="a.png")
    runner.run_pending()
    (request,) = fake_openai.chat_requests()
    question = request["messages"][-1]
    assert question["role"] == "user"
    text, image = question["content"]
    assert text == {"type": "text", "text": "Alice Liddell: @assistant what colour is this?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/webp;base64,")
    # The run keeps the prompt without the picture's bytes.
    stored = AssistantRun.objects.get().prompt[-1]["content"][1]
    assert stored["image_url"]["url"] == "(image)"


def test_older_images_are_not_sent_again(fake_openai, alice_client, group):
    attach(alice_client, group, image_bytes("PNG"), body="a photo", name="a.png")
    alice_client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "@assistant hello"})
    runner.run_pending()
    assert "image_url" not in str(fake_openai.chat_requests())


def test_deleting_a_message_deletes_its_image(alice_client, group, django_capture_on_commit_callbacks):
    attach(alice_client, group, image_bytes("PNG"), name="a.png")
    message = Message.objects.get(room=group, kind="text")
    storage, name = message.image.storage, message.image.name
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]))
    message.refresh_from_db()
    assert not message.image and not storage.exists(name)
    assert alice_client.get(reverse("rooms:message_image", args=[group.pk, message.pk])).status_code == 404


def _stored_files(settings) -> list[str]:
    media = settings.MEDIA_ROOT
    return sorted(str(path.relative_to(media)) for path in media.rglob("*") if path.is_file())


def test_a_refused_image_command_leaves_no_file_behind(settings, alice_client, group):
    """The attachment is stored with the message; when a later check refuses the post, the
    message is rolled back and so is its file."""
    response = attach(alice_client, group, image_bytes("PNG"), body="/image", name="a.png")
    assert response.status_code == 422
    page = response.content.decode()
    assert "Say what to draw" in page and ">\n/image</textarea>" in page  # the text is kept
    assert not Message.objects.filter(room=group, kind="text").exists()
    assert _stored_files(settings) == []


def test_an_image_post_inside_a_callers_transaction_that_rolls_back_leaves_no_file(settings, alice, group):
    """The file is kept once the post's own transaction commits, so that transaction must be
    the outermost: inside a caller's, which could still roll back after, the post is refused
    loudly instead of leaving a file that no message names."""
    from django.db import transaction

    from rooms import services
    from rooms.attachments import make_attachment
    from tests.conftest import membership

    class LaterFailure(Exception):
        pass

    upload = SimpleUploadedFile("a.png", image_bytes("PNG"), content_type="image/png")
    with pytest.raises(RuntimeError, match="durable atomic block cannot be nested"), transaction.atomic():
        services.do_post_message(membership(group, alice), "nested", image=make_attachment(upload))
        raise LaterFailure  # something after the post fails: the caller's transaction rolls back
    assert not Message.objects.filter(room=group, kind="text").exists()
    assert _stored_files(settings) == []


def test_a_post_without_an_image_may_still_run_inside_a_callers_transaction(alice, group):
    from django.db import transaction

    from rooms import services
    from tests.conftest import membership

    with transaction.atomic():
        services.do_post_message(membership(group, alice), "nested, no file")
    assert Message.objects.filter(room=group, body="nested, no file").exists()


def test_a_retried_send_with_an_image_keeps_one_file(settings, alice_client, group):
    """The same send twice (a lost answer, retried): one message, one stored image."""
    client_id = "7f1c0e52-4a53-4d7e-9a3b-2f1e4c5d6a70"
    for _ in range(2):
        upload = SimpleUploadedFile("a.png", image_bytes("PNG"), content_type="image/png")
        response = alice_client.post(
            reverse("rooms:post_message", args=[group.pk]),
            {"body": "twice", "image": upload, "client_id": client_id},
        )
        assert response.status_code == 302
    message = Message.objects.get(room=group, kind="text")
    assert _stored_files(settings) == [message.image.name]
    assert (message.image_width, message.image_height) == (300, 200)
