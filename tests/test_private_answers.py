"""Asking the assistant privately inside a shared room: catch me up, ask privately, share or
discard, continue in My assistant; and who may never see a private answer."""

import re
import zipfile

import pytest
from django.contrib import admin
from django.urls import reverse

from accounts import services as accounts
from assistant import asking, private, runner
from assistant.models import AssistantRun, Memory, PrivateAnswer
from rooms import services as rooms
from rooms.models import Message
from rooms.queries import sidebar_entries
from rooms.services.search import search_messages
from tests.conftest import HTMX, membership, post

SECRET_Q = "Should I quietly leave this trip?"
SECRET_A = "Zanzibar-private-answer"


def chatter(room, user, count, text="Message"):
    for i in range(count):
        rooms.do_post_message(membership(room, user), f"{text} {i} from {user.username}")


def catch_up_form(page: str) -> str | None:
    found = re.search(r'name="since" value="(\d+)"', page)
    return found.group(1) if found else None


def test_catch_me_up_is_offered_past_the_threshold_and_leaves_out_blocked_people_and_memories(
    fake_openai, settings, alice, bob, carol, alice_client, group
):
    settings.CATCH_UP_MIN_UNREAD = 15
    alice_client.get(group.get_absolute_url())  # read up to here
    chatter(group, bob, 10)
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert 'id="catch-up"' not in page  # 10 unread: below the threshold

    accounts.do_block(alice, carol)
    private.do_add_memory(alice, "My secret memory: blue horse")
    rooms.do_post_message(membership(group, bob), "We decided: Lisbon, 3 to 10 May. @alice can you book?")
    rooms.do_post_message(membership(group, carol), "Carol says something alice blocked")
    chatter(group, bob, 15, "Detail")
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert 'id="catch-up"' in page and "17 unread messages" in page
    since = catch_up_form(page)

    fake_openai.reply("- Lisbon is decided [#12]")
    response = alice_client.post(reverse("assistant:catch_up", args=[group.pk]), {"since": since}, **HTMX)
    assert response.status_code == 200 and "Catch-up" in response.content.decode()
    runner.run_pending()

    (request,) = fake_openai.reply_requests()  # the group decides too (Automatically): not streamed
    sent = str(request["messages"])
    assert "We decided: Lisbon" in sent and "Detail 14 from bob" in sent
    assert "Carol says" not in sent  # blocked
    assert "blue horse" not in sent  # never memories
    assert "Message 0 from bob" not in sent  # read before
    answer = PrivateAnswer.objects.get(user=alice)
    assert answer.state == "done" and answer.kind == "catch_up"
    page = alice_client.get(group.get_absolute_url()).content.decode()
    # Each point links to the message it comes from.
    assert f'href="/r/{group.pk}/m/12/"' in page
    # The run records its usage, but keeps no copy of the private prompt.
    run = AssistantRun.objects.get(kind="catch_up")
    assert run.prompt == [] and run.prompt_tokens and run.completion_tokens


def test_a_private_answer_is_its_askers_alone(fake_openai, alice, bob, alice_client, bob_client, group):
    """The access matrix of docs/assistant.md, "Private answers"."""
    bob_unread_before = next(e.unread for e in sidebar_entries(bob) if e.room.pk == group.pk)
    messages_before = Message.objects.count()
    fake_openai.reply(SECRET_A)
    response = alice_client.post(
        reverse("assistant:ask_privately", args=[group.pk]), {"question": SECRET_Q}, **HTMX
    )
    assert response.status_code == 200 and SECRET_Q in response.content.decode()
    runner.run_pending()
    assert PrivateAnswer.objects.get().body == SECRET_A
    assert next(e.unread for e in sidebar_entries(bob) if e.room.pk == group.pk) == bob_unread_before

    # Alice sees it on her page of the room; Bob's page does not have it.
    assert SECRET_A in alice_client.get(group.get_absolute_url()).content.decode()
    bob_page = bob_client.get(group.get_absolute_url()).content.decode()
    assert SECRET_A not in bob_page and SECRET_Q not in bob_page
    # Nothing was added to the room's messages: history, unread counts, search, exports
    # and moderation snapshots all read messages.
    assert Message.objects.count() == messages_before
    for user in (alice, bob):
        assert not search_messages(user, "Zanzibar").hits
    # Not in the admin.
    assert PrivateAnswer not in admin.site._registry
    # Not in another person's prompt.
    rooms.do_post_message(membership(group, bob), "@assistant what have we said?")
    runner.run_pending()
    # Bob's reply's request, not a decision run of the room's that may be due too.
    (bobs,) = [r for r in fake_openai.chat_requests() if "what have we said?" in str(r["messages"])]
    bob_prompt = str(bobs["messages"])
    assert SECRET_Q not in bob_prompt and SECRET_A not in bob_prompt
    # Bob cannot reach it by its address.
    answer = PrivateAnswer.objects.get()
    for name in ("share_private", "discard_private"):
        assert bob_client.post(reverse(f"assistant:{name}", args=[group.pk, answer.pk])).status_code == 404
    assert PrivateAnswer.objects.filter(pk=answer.pk).exists()


def test_the_private_ask_is_grounded_in_the_room_as_the_asker_sees_it(fake_openai, alice, bob, carol, group):
    private.do_add_memory(alice, "Alice's memory: blue horse")
    rooms.do_post_message(membership(group, bob), "Dates: we said 3 to 10 May")
    rooms.do_post_message(membership(group, carol), "Carol's message")
    accounts.do_block(alice, carol)
    asking.do_ask_privately(membership(group, alice), "What did we decide about dates?")
    runner.run_pending()
    # The group decides whether to speak too (Automatically), in an order of its own.
    (sent,) = [str(r["messages"]) for r in fake_openai.chat_requests() if "privately" in str(r["messages"])]
    assert "3 to 10 May" in sent and "What did we decide about dates?" in sent
    assert "Carol's message" not in sent and "blue horse" not in sent


def test_the_private_ask_reads_the_rolling_room_summary_but_a_catch_up_does_not(fake_openai, alice, group):
    from assistant.models import AssistantSettings

    AssistantSettings.objects.update_or_create(
        room=group, defaults={"summary": "Earlier: the group chose May.", "summary_through_seq": 1}
    )
    asking.do_ask_privately(membership(group, alice), "When do we go?")
    runner.run_pending()
    (asked,) = [r for r in fake_openai.chat_requests() if "When do we go?" in str(r["messages"])]
    assert "Earlier: the group chose May." in str(asked["messages"])
    # A catch-up is about what I have not read, from the messages themselves.
    asking.do_catch_up(membership(group, alice), 0)
    runner.run_pending()
    (caught_up,) = [r for r in fake_openai.chat_requests() if "catch up" in str(r["messages"])]
    assert "Earlier: the group chose May." not in str(caught_up)


def test_share_to_room_posts_the_question_and_answer_as_a_quoted_card(
    fake_openai, alice, alice_client, group
):
    fake_openai.reply("Book the 9:40 train.")
    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    # Not before it is finished.
    url = reverse("assistant:share_private", args=[group.pk, answer.pk])
    assert alice_client.post(url, **HTMX).status_code == 422
    runner.run_pending()
    response = alice_client.post(url)
    shared = Message.objects.filter(room=group, author=alice).latest("seq")
    assert response.status_code == 302 and response["Location"].endswith(f"#m-{shared.pk}")
    assert shared.body == "> **Question:** Which train?\n\n> **Assistant (AI):** Book the 9:40 train."
    assert not PrivateAnswer.objects.exists()


def test_discard_removes_it(fake_openai, alice, alice_client, group):
    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    runner.run_pending()
    url = reverse("assistant:discard_private", args=[group.pk, answer.pk])
    assert alice_client.post(url, **HTMX).status_code == 200
    assert not PrivateAnswer.objects.exists()
    assert "Which train?" not in alice_client.get(group.get_absolute_url()).content.decode()


def test_a_discarded_question_still_waiting_is_never_asked(fake_openai, alice, group):
    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    asking.do_discard(answer)
    runner.run_pending()
    assert fake_openai.chat_requests() == []
    assert not Message.objects.filter(room=group, kind="assistant").exists()


@pytest.mark.parametrize("question", ["", "   ", "x" * 5000])
def test_a_bad_question_is_refused_clearly(fake_openai, alice_client, group, question):
    response = alice_client.post(
        reverse("assistant:ask_privately", args=[group.pk]), {"question": question}, **HTMX
    )
    assert response.status_code == 422 and 'role="alert"' in response.content.decode()
    assert not PrivateAnswer.objects.exists()


def test_without_a_model_it_says_so_privately(settings, alice_client, group):
    settings.OPENAI_API_KEY = ""
    response = alice_client.post(
        reverse("assistant:ask_privately", args=[group.pk]), {"question": "hi"}, **HTMX
    )
    assert response.status_code == 422 and "not configured" in response.content.decode()
    assert not Message.objects.filter(room=group, kind="assistant").exists()


def test_private_asks_count_against_the_askers_daily_allowance(fake_openai, settings, alice, group):
    settings.ASSISTANT_DAILY_RUNS = 1
    asking.do_ask_privately(membership(group, alice), "one")
    with pytest.raises(Exception, match="today"):
        asking.do_ask_privately(membership(group, alice), "two")


def test_not_in_the_private_room_nor_for_non_members(fake_openai, alice, alice_client, mallory_client, group):
    room = private.do_open_private_room(alice)
    assert (
        alice_client.post(
            reverse("assistant:ask_privately", args=[room.pk]), {"question": "hi"}, **HTMX
        ).status_code
        == 422
    )
    assert (
        mallory_client.post(
            reverse("assistant:ask_privately", args=[group.pk]), {"question": "hi"}
        ).status_code
        == 404
    )
    assert (
        mallory_client.post(reverse("assistant:catch_up", args=[group.pk]), {"since": "0"}).status_code == 404
    )


def test_continue_in_my_assistant_takes_the_excerpt_and_a_link_back(
    fake_openai, alice, bob, carol, alice_client, group
):
    Memory.objects.create(user=alice, text="Alice likes trains")
    accounts.do_block(alice, carol)
    rooms.do_post_message(membership(group, bob), "First idea: Porto")
    rooms.do_post_message(membership(group, carol), "Carol's blocked idea")
    target = rooms.do_post_message(membership(group, bob), "Second idea: Lisbon").message
    url = reverse("assistant:continue_privately", args=[group.pk, target.pk])
    assert "Continue in My assistant?" in alice_client.get(url).content.decode()
    response = alice_client.post(url)
    mine = private.do_open_private_room(alice)
    assert response.status_code == 302 and response["Location"].startswith(mine.get_absolute_url())
    excerpt = Message.objects.filter(room=mine, author=alice).get()
    assert "First idea: Porto" in excerpt.body and "Second idea: Lisbon" in excerpt.body
    assert "Carol's blocked idea" not in excerpt.body
    assert f"/r/{group.pk}/m/{target.seq}/" in excerpt.body
    runner.run_pending()
    # My memories apply there, as in any message to my assistant; never back in the room.
    (in_private,) = [r for r in fake_openai.chat_requests() if "Continuing from" in str(r["messages"])]
    assert "Alice likes trains" in str(in_private["messages"])
    assert not Message.objects.filter(room=group, body__contains="trains").exists()


def test_the_message_menu_offers_continue_in_shared_rooms(alice, bob, alice_client, group):
    rooms.do_post_message(membership(group, bob), "Hello")
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "Continue in My assistant" in page


# Over the sockets: the answer streams to the asker's pages of the room, and nowhere else


@pytest.mark.django_db(transaction=True)
async def test_another_members_socket_never_receives_a_private_answer(fake_openai, alice, bob, group, direct):
    import asyncio

    from asgiref.sync import sync_to_async

    from tests.sockets import connected, delivered, html

    worker = runner.Runner()
    runner.install(worker)
    task = asyncio.ensure_future(worker.serve())
    try:
        words = [f"{SECRET_A}{i} " for i in range(20)]
        fake_openai.queue(tokens=words, token_interval=0.01)
        alice_here = await connected(alice, group)
        alice_elsewhere = await connected(alice, direct)
        bob_here = await connected(bob, group)
        answer = await sync_to_async(lambda: asking.do_ask_privately(membership(group, alice), SECRET_Q))()

        received: list[str] = []
        while "private-answer--done" not in "".join(received):
            received.append(await alice_here.receive_from(timeout=5))
        streamed = [f for f in received if f'id="pa-{answer.pk}-body"' in f]
        assert len(streamed) >= 2  # partial text, then the finished card
        assert f"{SECRET_A}19" in received[-1]

        for other in (bob_here, alice_elsewhere):
            seen = html(await delivered(other))
            assert SECRET_A not in seen and SECRET_Q not in seen and "pa-" not in seen
        for socket in (alice_here, alice_elsewhere, bob_here):
            await socket.disconnect()
    finally:
        runner.install(None)
        task.cancel()


def test_the_askers_export_holds_their_private_answers_and_nobody_elses(
    fake_openai, settings, tmp_path, alice, bob, group
):
    import json

    settings.EXPORTS_ROOT = tmp_path / "exports"

    from jobs import runner as jobs_runner
    from privacy import services as privacy
    from privacy.export import export_path

    fake_openai.reply(SECRET_A)
    asking.do_ask_privately(membership(group, alice), SECRET_Q)
    runner.run_pending()
    exports = {user: privacy.do_request_export(user) for user in (alice, bob)}
    jobs_runner.run_pending()
    for user, export in exports.items():
        export.refresh_from_db()
        with zipfile.ZipFile(export_path(export)) as archive:
            everything = "".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist())
            answers = json.loads(archive.read("private-answers.json"))
        if user == alice:
            assert [(a["question"], a["answer"], a["conversation"]) for a in answers] == [
                (SECRET_Q, SECRET_A, "Trip planning")
            ]
        else:
            assert answers == [] and SECRET_A not in everything and SECRET_Q not in everything


def test_an_encrypted_room_has_no_private_assistant(fake_openai, settings, alice, bob, alice_client):
    """The assistant is kept out of end-to-end encrypted rooms: it could only read ciphertext."""
    from tests.test_e2ee import mls, start

    settings.CATCH_UP_MIN_UNREAD = 1
    room = start(alice_client, bob.username)
    assert post(alice_client, room, mls(2)).status_code == 302
    message = Message.objects.get(room=room, kind=Message.Kind.ENCRYPTED)
    page = alice_client.get(room.get_absolute_url()).content.decode()
    assert 'id="private-panel"' not in page and "Continue in My assistant" not in page
    for url, data in (
        (reverse("assistant:ask_privately", args=[room.pk]), {"question": "hi"}),
        (reverse("assistant:catch_up", args=[room.pk]), {"since": "0"}),
    ):
        response = alice_client.post(url, data, **HTMX)
        assert response.status_code == 422 and "end-to-end encrypted" in response.content.decode()
    assert (
        alice_client.post(reverse("assistant:continue_privately", args=[room.pk, message.pk])).status_code
        == 404
    )
    assert not PrivateAnswer.objects.exists() and fake_openai.chat_requests() == []
    settings_page = alice_client.get(reverse("rooms:settings", args=[room.pk])).content.decode()
    assert 'id="ai-budget"' not in settings_page


# Found in review: recovery, a second Share, another room's address


def _orphaned_private_run(group, alice, *, attempts):
    import datetime as dt

    from django.utils import timezone

    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    stale = timezone.now() - dt.timedelta(seconds=600)
    AssistantRun.objects.filter(pk=answer.run_id).update(
        status="running", attempts=attempts, started_at=stale, heartbeat_at=stale, worker="gone:1:abc"
    )
    PrivateAnswer.objects.filter(pk=answer.pk).update(state="streaming", body="half an ans")
    return answer


def test_a_private_run_orphaned_twice_fails_in_its_card_instead_of_streaming_for_ever(
    fake_openai, alice, alice_client, group
):
    from assistant import runs

    answer = _orphaned_private_run(group, alice, attempts=2)
    assert runs.recover_orphans() == 1
    answer.refresh_from_db()
    assert answer.run.status == "failed"
    assert answer.state == "failed" and "interrupted by a server restart" in answer.note
    page = alice_client.get(group.get_absolute_url()).content.decode()
    assert "private-answer--failed" in page and "interrupted by a server restart" in page


def test_a_private_run_orphaned_once_starts_afresh_and_says_so_meanwhile(fake_openai, alice, group):
    from assistant import runs

    fake_openai.reply("Take the 9:40.")
    answer = _orphaned_private_run(group, alice, attempts=1)
    assert runs.recover_orphans() == 1
    answer.refresh_from_db()
    # The half answer goes (the next attempt answers from the start), saying why.
    assert answer.run.status == "queued" and answer.body == "" and answer.note == runs.RECONNECTING
    runner.run_pending()
    answer.refresh_from_db()
    assert (answer.state, answer.body, answer.note) == ("done", "Take the 9:40.", "")


def test_sharing_twice_posts_once(fake_openai, alice, alice_client, group):
    """A second Share (a double click without JavaScript, another tab) of the same answer
    finds it gone instead of posting it again."""
    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    runner.run_pending()
    answer.refresh_from_db()
    stale = PrivateAnswer.objects.get(pk=answer.pk)
    asking.do_share_private(membership(group, alice), answer)
    with pytest.raises(Exception, match="no longer"):
        asking.do_share_private(membership(group, alice), stale)
    assert Message.objects.filter(room=group, author=alice, body__contains="Which train?").count() == 1


def test_an_answer_is_reached_only_through_its_own_room(fake_openai, alice, alice_client, group, direct):
    answer = asking.do_ask_privately(membership(group, alice), "Which train?")
    runner.run_pending()
    for name in ("share_private", "discard_private"):
        url = reverse(f"assistant:{name}", args=[direct.pk, answer.pk])
        assert alice_client.post(url, **HTMX).status_code == 404
    assert PrivateAnswer.objects.filter(pk=answer.pk).exists()
    assert not Message.objects.filter(room=direct, body__contains="Which train?").exists()
