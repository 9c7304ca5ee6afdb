"""Files on messages: attached by members, kept under random names, downloaded by the room's
members only, always as an attachment with a type no browser renders as a page."""

import uuid
import warnings
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from rooms import attachments, filetypes, services
from rooms.models import Message, Room
from rooms.services.moderation import do_remove_message_as_moderator
from tests.conftest import HTMX, image_bytes, membership

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def send_file(
    client, room, data: bytes, *, name="report.pdf", body="", content_type="application/pdf", **extra
):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    fields = {"body": body, "client_id": str(uuid.uuid4()), "file": upload}
    return client.post(reverse("rooms:post_message", args=[room.pk]), fields, **extra)


def file_message(room) -> Message:
    return Message.objects.get(room=room, kind=Message.Kind.TEXT)


def download_url(message) -> str:
    return reverse("rooms:message_file", args=[message.room_id, message.pk])


def stored_files(settings) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "files"
    return sorted(folder.iterdir()) if folder.exists() else []


def content(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_member_sends_a_pdf_and_the_others_download_it(settings, alice_client, bob_client, group):
    response = send_file(alice_client, group, PDF, body="the minutes")
    assert response.status_code == 302
    message = file_message(group)
    assert (message.body, message.file_name, message.file_size, message.file_type) == (
        "the minutes",
        "report.pdf",
        len(PDF),
        "application/pdf",
    )
    assert not message.image
    # Stored under a random name: nothing of the sender's name reaches the disk.
    assert message.file.name.startswith("files/") and "report" not in message.file.name
    assert [path.name for path in stored_files(settings)] == [message.file.name.removeprefix("files/")]

    response = bob_client.get(download_url(message))
    assert response.status_code == 200
    assert content(response) == PDF
    assert response["Content-Type"] == "application/pdf"
    assert (
        response["Content-Disposition"] == "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )
    assert response["Content-Length"] == str(len(PDF))
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
    assert response["Cache-Control"] == "private, no-store"


def test_the_room_shows_a_file_card_with_name_type_size_and_a_download_link(alice_client, bob_client, group):
    send_file(alice_client, group, PDF)
    message = file_message(group)
    page = bob_client.get(group.get_absolute_url()).content.decode()
    card = page[page.index('class="file-card file-card--pdf"') :]
    card = card[: card.index("</div>")]
    assert f'href="{download_url(message)}" download' in card
    assert ">report.pdf</a>" in card
    assert f"PDF document · {len(PDF)}\xa0bytes" in card
    assert 'aria-label="Download report.pdf"' in card


@pytest.mark.parametrize(
    ("name", "key", "badge", "label"),
    [
        ("setup.exe", "program", "EXE", "Program"),
        ("photos.zip", "archive", "ZIP", "Archive"),
        ("backup.tar.gz", "archive", "GZ", "Archive"),
        ("budget.xlsx", "spreadsheet", "XLSX", "Spreadsheet"),
        ("song.mp3", "audio", "MP3", "Audio"),
        ("notes", "file", "FILE", "File"),
    ],
)
def test_programs_and_archives_are_plain_file_cards_with_an_icon_by_type(
    alice_client, group, name, key, badge, label
):
    send_file(
        alice_client, group, b"MZ\x90\x00 whatever is inside", name=name, content_type="application/x-what"
    )
    message = file_message(group)
    assert message.file_kind == filetypes.FileKind(key, badge, label)
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert f'<div class="file-card file-card--{key}">' in page
    assert f'<span class="file-card__icon" aria-hidden="true">{badge}</span>' in page


def test_a_file_named_like_a_web_page_downloads_as_an_inert_attachment(alice_client, bob_client, group):
    """`<script>.html` is never served as HTML, nor its name written into a page or a header as it is."""
    page_bytes = b"<script>alert(document.cookie)</script>"
    send_file(alice_client, group, page_bytes, name="<script>.html", content_type="text/html")
    message = file_message(group)
    assert message.file_name == "_script_.html"
    response = bob_client.get(download_url(message))
    assert response.status_code == 200 and content(response) == page_bytes
    assert response["Content-Type"] == "application/octet-stream"
    assert (
        response["Content-Disposition"]
        == "attachment; filename=\"_script_.html\"; filename*=UTF-8''_script_.html"
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "<script>.html" not in page and ">_script_.html</a>" in page


@pytest.mark.parametrize(
    "name", ["drawing.svg", "feed.xml", "app.js", "page.xhtml", "index.htm", "page.shtml", "x.mht"]
)
def test_types_a_browser_would_run_are_served_as_octet_stream(alice_client, group, name):
    send_file(alice_client, group, b"<svg onload='alert(1)'/>", name=name, content_type="image/png")
    response = alice_client.get(download_url(file_message(group)))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment; ")


def test_a_name_outside_ascii_is_sent_twice_as_rfc_6266_asks(alice_client, group):
    send_file(alice_client, group, PDF, name="Résumé – été.pdf")
    message = file_message(group)
    assert message.file_name == "Résumé – été.pdf"
    assert alice_client.get(download_url(message))["Content-Disposition"] == (
        'attachment; filename="Resume  ete.pdf"; '
        "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E2%80%93%20%C3%A9t%C3%A9.pdf"
    )


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\alice\\Desktop\\plan.docx", "plan.docx"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),  # a right-to-left override hides ".exe"
        ('say "hi"\r\n.txt', "say _hi_ .txt"),
        ("a\x00b\x07c.zip", "abc.zip"),
        ("  .hidden  ", "hidden"),
        ("...", "file"),
        ("", "file"),
        ("café.pdf", "café.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_file_names_are_cleaned(sent, kept):
    assert filetypes.clean_file_name(sent) == kept


def test_nobody_outside_the_room_downloads_a_file(alice_client, mallory_client, mallory, group):
    send_file(alice_client, group, PDF)
    message = file_message(group)
    assert mallory_client.get(download_url(message)).status_code == 404
    # Through a room of mallory's own, with the message's id: still no such message.
    own = services.do_create_group(mallory, "Mallory's", [])
    assert mallory_client.get(reverse("rooms:message_file", args=[own.pk, message.pk])).status_code == 404
    # Nor through /media/, knowing the random name.
    assert mallory_client.get(f"/media/{message.file.name}").status_code == 404
    assert alice_client.get(f"/media/{message.file.name}").status_code == 404


def test_forged_ids_and_messages_without_a_file_are_404(alice_client, alice, group):
    send_file(alice_client, group, PDF)
    message = file_message(group)
    services.do_post_message(membership(group, alice), "no file here")
    text_only = Message.objects.get(room=group, body="no file here")
    for room_id, message_id in [
        (group.pk, message.pk + 1000),
        (group.pk + 1000, message.pk),
        (group.pk, text_only.pk),
    ]:
        assert alice_client.get(reverse("rooms:message_file", args=[room_id, message_id])).status_code == 404
    assert alice_client.get(f"/r/{group.pk}/m/99999999999999999999/file/").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, alice_client, group):
    send_file(alice_client, group, PDF)
    response = client.get(download_url(file_message(group)))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_deleting_the_message_deletes_the_file_once_the_delete_commits(
    settings, alice_client, bob_client, group, django_capture_on_commit_callbacks
):
    send_file(alice_client, group, PDF)
    message = file_message(group)
    url = download_url(message)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        alice_client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]), **HTMX)
    assert len(stored_files(settings)) == 1  # not before the commit
    for callback in callbacks:
        callback()
    assert stored_files(settings) == []
    message.refresh_from_db()
    assert message.is_deleted and not message.file
    assert (message.file_name, message.file_size, message.file_type) == ("", None, "")
    assert bob_client.get(url).status_code == 404
    assert alice_client.get(url).status_code == 404


def test_an_admin_removing_a_message_removes_its_file(
    settings, alice_client, bob_client, group, django_capture_on_commit_callbacks
):
    send_file(bob_client, group, PDF)
    message = file_message(group)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(
            reverse("rooms:delete_message", args=[group.pk, message.pk])
        )  # alice owns the group
    message.refresh_from_db()
    assert message.removed_by == "admin" and stored_files(settings) == []


def test_a_moderator_removing_a_message_removes_its_file(
    settings, bob_client, group, django_capture_on_commit_callbacks
):
    send_file(bob_client, group, PDF)
    with django_capture_on_commit_callbacks(execute=True):
        do_remove_message_as_moderator(file_message(group))
    assert stored_files(settings) == []


def test_a_file_over_the_limit_is_refused_and_the_text_stays(settings, alice_client, group):
    settings.ATTACHMENT_MAX_BYTES = 2048
    response = send_file(alice_client, group, b"x" * 2049, name="big.zip", body="here it is", **HTMX)
    assert response.status_code == 422
    page = response.content.decode()
    assert "That file is 2.0\xa0KB; files can be at most 2.0\xa0KB." in page
    assert "data-file-refused" in page
    assert ">\nhere it is</textarea>" in page
    assert not Message.objects.filter(room=group, kind="text").exists()
    assert stored_files(settings) == []
    # At the limit it goes.
    assert send_file(alice_client, group, b"x" * 2048, name="big.zip").status_code == 302


def test_a_file_over_the_limit_is_refused_without_javascript_too(settings, alice_client, group):
    settings.ATTACHMENT_MAX_BYTES = 2048
    response = send_file(alice_client, group, b"x" * 5000, name="big.zip", body="here it is")
    assert response.status_code == 422
    page = response.content.decode()
    assert "files can be at most 2.0\xa0KB" in page and ">\nhere it is</textarea>" in page


def test_an_empty_file_is_refused_and_the_text_stays(settings, alice_client, group):
    response = send_file(alice_client, group, b"", name="empty.txt", body="see attached", **HTMX)
    assert response.status_code == 422
    page = response.content.decode()
    assert "That file is empty; there is nothing to send." in page and ">\nsee attached</textarea>" in page
    assert not Message.objects.filter(room=group, kind="text").exists()


def test_the_composer_says_the_limit_and_the_page_knows_it(settings, alice_client, group):
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert f'data-max-bytes="{settings.ATTACHMENT_MAX_BYTES}"' in page
    assert "Attach a file or a picture (up to 25.0\xa0MB)" in page
    assert "accept=" not in page[page.index('id="composer"') :]


def test_a_picture_keeps_the_image_pipeline(alice_client, group):
    send_file(alice_client, group, image_bytes("JPEG"), name="photo.jpg", content_type="image/jpeg")
    message = file_message(group)
    assert message.image and not message.file and message.image.name.endswith(".webp")


def test_a_file_alone_previews_as_its_name(alice, alice_client, bob_client, group, events):
    with events() as sent:
        send_file(alice_client, group, PDF, name="minutes.pdf")
    message = file_message(group)
    assert message.preview == "📎 minutes.pdf"
    (event,) = [event for _, event in sent.of_type("room.message")]
    assert "📎 minutes.pdf" in event["sidebar_html"]
    assert 'class="file-card file-card--pdf"' in event["message_html"]
    assert "📎 minutes.pdf" in bob_client.get(reverse("rooms:index")).content.decode()


def test_a_file_with_text_previews_as_the_text(alice_client, group):
    send_file(alice_client, group, PDF, body="the minutes")
    assert file_message(group).preview == "the minutes"


def test_the_same_file_sent_again_with_its_client_id_is_one_message(alice_client, group):
    client_id = str(uuid.uuid4())

    def send(data, name="a.pdf"):
        upload = SimpleUploadedFile(name, data, content_type="application/pdf")
        url = reverse("rooms:post_message", args=[group.pk])
        return alice_client.post(url, {"body": "", "client_id": client_id, "file": upload})

    first = send(PDF)
    assert send(PDF)["Location"] == first["Location"]
    assert send(PDF + b"%more")["Location"] != first["Location"]
    assert send(PDF, name="b.pdf")["Location"] != first["Location"]
    assert group.messages.with_file().count() == 3


def test_has_file_finds_files_and_not_pictures(alice_client, group):
    send_file(alice_client, group, PDF)
    send_file(alice_client, group, image_bytes("PNG"), name="a.png", content_type="image/png")
    services.do_post_message(membership(group, group.owner), "just text")
    assert [m.file_name for m in Message.objects.with_file()] == ["report.pdf"]
    assert Message.objects.filter(room=group).with_image().count() == 1


def test_files_count_towards_a_daily_quota(settings, alice_client, group):
    settings.RATE_ATTACHMENT_MB_PER_DAY = 1
    assert send_file(alice_client, group, b"x" * 700_000, name="a.bin").status_code == 302
    response = send_file(alice_client, group, b"y" * 700_000, name="b.bin", body="and another", **HTMX)
    assert response.status_code == 422
    page = response.content.decode()
    assert "You are sending files too often" in page and ">\nand another</textarea>" in page
    # The refused file is not left on disk.
    assert len(stored_files(settings)) == 1


def test_a_large_upload_arrives_on_disk_not_in_memory(settings, alice_client, group, monkeypatch):
    seen = []
    read_upload = attachments.read_upload

    def spy(upload):
        seen.append(type(upload))
        return read_upload(upload)

    monkeypatch.setattr("rooms.views.messages.read_upload", spy)
    big = settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1
    assert send_file(alice_client, group, b"z" * big, name="big.bin").status_code == 302
    assert seen == [TemporaryUploadedFile]
    assert file_message(group).file_size == big


def test_a_page_loaded_before_files_still_sends_its_image_field(alice_client, group):
    upload = SimpleUploadedFile("photo.png", image_bytes("PNG"), content_type="image/png")
    response = alice_client.post(
        reverse("rooms:post_message", args=[group.pk]), {"body": "", "image": upload}
    )
    assert response.status_code == 302 and file_message(group).image


def test_files_cost_the_room_page_no_extra_query(alice, alice_client, group):
    now = timezone.now()
    group.refresh_from_db()
    rows = [
        Message(
            room=group,
            seq=group.last_seq + i,
            author=alice,
            body="",
            file=f"files/f{i}",
            file_name=f"file {i}.pdf",
            file_size=1000 * i,
            file_type="application/pdf",
            created_at=now,
        )
        for i in range(1, 31)
    ]
    Message.objects.bulk_create(rows)
    last = Message.objects.get(room=group, seq=group.last_seq + 30)
    Room.objects.filter(pk=group.pk).update(last_seq=last.seq, last_message=last)
    alice_client.get(group.get_absolute_url())  # read to the end: both views below move nothing
    with CaptureQueriesContext(connection) as with_files:
        page = alice_client.get(group.get_absolute_url()).content.decode()
    assert page.count('class="file-card ') == 30
    Message.objects.filter(room=group).update(file="", file_name="", file_size=None, file_type="", body="hi")
    with CaptureQueriesContext(connection) as without:
        alice_client.get(group.get_absolute_url())
    assert len(with_files) == len(without)


def test_under_asgi_a_download_streams_in_chunks_instead_of_being_read_whole(alice, alice_client, group):
    """Django reads a synchronous FileResponse whole into memory under ASGI (and warns); the
    file goes out a chunk at a time, with its length announced."""
    data = bytes(range(256)) * 4096  # 1 MiB
    send_file(alice_client, group, data, name="big.bin", content_type="application/octet-stream")
    message = file_message(group)
    client = AsyncClient()
    client.force_login(alice)

    async def download():
        response = await client.get(download_url(message))
        return response, [chunk async for chunk in response.streaming_content]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        response, chunks = async_to_sync(download)()
    assert response.status_code == 200 and response.is_async
    assert b"".join(chunks) == data and len(chunks) == 4
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith('attachment; filename="big.bin"')
