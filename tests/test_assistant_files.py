"""Files for the assistant: the text of a PDF or a text file it is asked about, within a
budget, and saying so when it had to cut."""

import io
import uuid

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from assistant import runner, services
from assistant.files import FileText, read_for_assistant
from assistant.models import AssistantRun, ReplyMode
from rooms.models import Message
from tests.pdfs import slow_pdf, text_pdf


def send_file(client, room, data, *, name, body, content_type):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    fields = {"body": body, "client_id": str(uuid.uuid4()), "file": upload}
    response = client.post(reverse("rooms:post_message", args=[room.pk]), fields)
    assert response.status_code == 302, response.content[:300]  # without htmx: back to the room


def reply(room):
    return Message.objects.get(room=room, kind=Message.Kind.ASSISTANT)


def test_a_pdf_sent_with_a_mention_is_read(fake_openai, alice, bob_client, group):
    pdf = text_pdf(["Quarterly report: revenue grew 12 percent.", "Costs fell in the second half."])
    send_file(
        bob_client,
        group,
        pdf,
        name="report.pdf",
        body="@assistant summarise this",
        content_type="application/pdf",
    )
    runner.run_pending()
    last = fake_openai.reply_requests()[0]["messages"][-1]["content"]
    assert "revenue grew 12 percent" in last and "Costs fell in the second half" in last
    assert '<file name="report.pdf">' in last
    assert reply(group).note == ""  # the whole file fit


def test_a_long_pdf_is_cut_and_the_reply_says_so(settings, fake_openai, alice, bob_client, group):
    settings.ASSISTANT_FILE_TOKENS = 40  # about 160 characters: a few pages of this one
    pdf = text_pdf([f"Page {i} says something worth reading about topic {i}." for i in range(1, 41)])
    send_file(
        bob_client,
        group,
        pdf,
        name="long.pdf",
        body="@assistant what is in here?",
        content_type="application/pdf",
    )
    runner.run_pending()
    last = fake_openai.reply_requests()[0]["messages"][-1]["content"]
    assert "topic 1." in last and "topic 40." not in last
    assert "Say so briefly in your answer." in last
    note = reply(group).note
    assert note.startswith("Read the first ") and note.endswith(" of 40 pages of long.pdf.")


def test_a_text_file_is_read_and_a_binary_one_is_not(fake_openai, alice, bob_client, group):
    send_file(
        bob_client,
        group,
        b"name,age\nAda,36\n",
        name="people.csv",
        body="@assistant who is oldest?",
        content_type="text/csv",
    )
    runner.run_pending()
    assert "Ada,36" in fake_openai.reply_requests()[0]["messages"][-1]["content"]
    send_file(
        bob_client,
        group,
        b"PK\x03\x04binary",
        name="data.zip",
        body="@assistant and this?",
        content_type="application/zip",
    )
    runner.run_pending()
    last = fake_openai.reply_requests()[1]["messages"][-1]["content"]
    assert "[attached file: data.zip]" in last and "<file" not in last


def test_only_the_file_of_the_message_it_answers_is_read(fake_openai, alice, bob_client, group):
    services.do_update_assistant(alice, group, name="Assistant", personality="", reply_mode=ReplyMode.MENTION)
    send_file(
        bob_client, group, b"the old secret", name="old.txt", body="here you go", content_type="text/plain"
    )
    bob_client.post(
        reverse("rooms:post_message", args=[group.pk]),
        {"body": "@assistant hi", "client_id": str(uuid.uuid4())},
    )
    runner.run_pending()
    sent = str(fake_openai.reply_requests()[0]["messages"])
    assert "[attached file: old.txt]" in sent and "the old secret" not in sent


class Stored(io.BytesIO):
    """Stands in for a stored file (a FieldFile's open())."""

    def open(self, mode="rb"):
        self.seek(0)
        return self

    def __exit__(self, *args):
        return None


def test_reading_unit_cases():
    cut = read_for_assistant(Stored(b"x" * 1000), "notes.txt", "text/plain", max_chars=100)
    assert cut is not None and len(cut.text) == 100 and cut.note == "Read about the first 10% of notes.txt."
    whole = read_for_assistant(Stored("héllo".encode()), "a.md", "", max_chars=100)
    assert whole is not None and whole.text == "héllo" and whole.note == ""
    broken = read_for_assistant(Stored(b"%PDF-1.4 not really"), "bad.pdf", "application/pdf", max_chars=100)
    assert broken is not None and broken.text == "" and broken.note == "Could not read bad.pdf."
    assert read_for_assistant(Stored(b"\x89PNG"), "x.png", "image/png") is None


def test_a_pdf_that_costs_minutes_to_read_is_cut_short(settings):
    # 300 pages of a few kilobytes, each costing pypdf a second or more: read within
    # ASSISTANT_FILE_SECONDS (in a process of its own), as far as it got, and said so.
    settings.ASSISTANT_FILE_SECONDS = 1.0
    data = slow_pdf(300, 8000)
    assert len(data) < 100_000
    read = read_for_assistant(Stored(data), "slow.pdf", "application/pdf", max_chars=12000)
    assert read is not None and read.text.count("[page ") < 300
    assert read.note.startswith("Read the first ") and read.note.endswith(" of 300 pages of slow.pdf.")


def test_a_password_protected_pdf_is_not_read_and_says_why():
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(text_pdf(["secret page"]))))
    writer.encrypt("hunter2", algorithm="RC4-128")
    locked = io.BytesIO()
    writer.write(locked)
    read = read_for_assistant(Stored(locked.getvalue()), "locked.pdf", "application/pdf", max_chars=1000)
    assert read == FileText("", "Could not read locked.pdf: it is protected by a password.")


class FreeRunner:
    """This process's runner, always with a free slot; starts nothing (the test looks at
    how the post created the run)."""

    worker = "here:1:abc"

    def has_free_slot(self):
        return True

    def start_created(self, run_id):
        return True

    def show_started(self, run_id):
        pass

    def notify_threadsafe(self):
        pass

    def stop_run_threadsafe(self, run_id):
        pass


def test_a_reply_to_a_pdf_never_starts_on_the_post_path(settings, alice, bob_client, group):
    # A run created running is prepared (its file read) in the thread that committed the
    # post, before the room is shown the message: a PDF, read in a process of its own for
    # up to ASSISTANT_FILE_SECONDS, is left to the runner's own thread instead.
    from assistant import dispatch

    settings.OPENAI_API_KEY = "configured"
    dispatch.install(FreeRunner())
    try:
        send_file(bob_client, group, b"text", name="a.txt", body="@assistant hi", content_type="text/plain")
        text_run = AssistantRun.objects.get(room=group)
        assert text_run.worker == FreeRunner.worker  # created running, for this process's runner
        AssistantRun.objects.filter(room=group).update(status=AssistantRun.Status.DONE, worker="")
        send_file(
            bob_client,
            group,
            text_pdf(["page one"]),
            name="report.pdf",
            body="@assistant summarise this",
            content_type="application/pdf",
        )
    finally:
        dispatch.install(None)
    pdf_run = AssistantRun.objects.filter(room=group).latest("id")
    assert pdf_run.status == AssistantRun.Status.QUEUED and pdf_run.worker == ""
