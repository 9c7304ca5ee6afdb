"""Posting, editing, deleting and replying to messages, over plain HTTP and htmx."""

import uuid

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from rooms import services
from rooms.models import Message
from rooms.services import search
from tests.conftest import COMPOSER, HTMX, image_bytes, membership, post

pytestmark = pytest.mark.django_db

# A text message from the composer, in a test's transaction (a savepoint and its release
# around the post): SQLite writes the search index with a statement of its own.
POST_QUERIES = {"sqlite": 11, "postgresql": 10}


def texts(room):
    return list(room.messages.filter(kind=Message.Kind.TEXT).order_by("seq").values_list("body", flat=True))


def test_posting_without_javascript_redirects_back_to_the_message(alice_client, group):
    response = post(alice_client, group, "Hello, everyone")
    message = group.messages.get(body="Hello, everyone")
    assert response.status_code == 302
    assert response["Location"] == f"{group.get_absolute_url()}#m-{message.pk}"
    assert "Hello, everyone" in alice_client.get(group.get_absolute_url()).content.decode()


def test_posting_with_htmx_returns_the_message_and_leaves_the_composer_to_the_page(alice_client, group):
    """The page resets its composer itself and takes the next client_id (static/js/composer.js);
    the answer carries the message only, and tells htmx to leave the composer where it is."""
    client_id = str(uuid.uuid4())
    response = alice_client.post(
        reverse("rooms:post_message", args=[group.pk]),
        {"body": "Hi **there**", "client_id": client_id, "reply_to": ""},
        **COMPOSER,
    )
    assert response.status_code == 200
    assert response["HX-Reswap"] == "none"
    body = response.content.decode()
    assert 'hx-swap-oob="beforeend:#messages"' in body
    assert "<strong>there</strong>" in body
    assert 'id="composer"' not in body
    assert client_id not in body  # the id of the message just sent goes no further


def test_a_page_loaded_before_the_composer_reset_itself_still_gets_a_fresh_composer(alice_client, group):
    """A page open across a deploy (its composer.js does not say "Calpico-Composer: resets")
    would otherwise keep the text sent and the used client_id in its composer."""
    client_id = str(uuid.uuid4())
    response = alice_client.post(
        reverse("rooms:post_message", args=[group.pk]),
        {"body": "Hi **there**", "client_id": client_id, "reply_to": ""},
        **HTMX,
    )
    assert response.status_code == 200
    assert "HX-Reswap" not in response
    body = response.content.decode()
    assert 'hx-swap-oob="beforeend:#messages"' in body
    assert "<strong>there</strong>" in body
    assert body.count('id="composer"') == 1
    assert 'name="client_id"' in body
    assert client_id not in body  # the next message gets a new id
    assert "Hi **there**" not in body  # an empty composer


def test_a_refused_htmx_post_answers_with_the_composer_in_place(alice_client, group):
    """A refusal is swapped in as before (no HX-Reswap): the composer with the text and the error."""
    response = post(alice_client, group, "   ", headers=HTMX)
    assert response.status_code == 422
    assert "HX-Reswap" not in response
    assert 'id="composer"' in response.content.decode()


def test_messages_take_the_rooms_next_sequence_number(alice_client, bob_client, group):
    start = group.messages.count()
    post(alice_client, group, "one")
    post(bob_client, group, "two")
    seqs = list(group.messages.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, start + 3))
    group.refresh_from_db()
    assert group.last_seq == start + 2
    assert group.last_message.body == "two"


def test_sending_twice_with_the_same_client_id_stores_one_message(alice_client, group):
    client_id = str(uuid.uuid4())
    first = post(alice_client, group, "only once", client_id=client_id)
    second = post(alice_client, group, "only once", client_id=client_id)
    assert first["Location"] == second["Location"]
    assert texts(group) == ["only once"]


def test_new_text_with_a_used_client_id_is_stored_not_dropped(alice_client, group):
    """A page brought back by the browser's Back button may send the id of a message it
    already sent: the new text is a new message, not a retry of the old one."""
    client_id = str(uuid.uuid4())
    post(alice_client, group, "before going back", client_id=client_id)
    response = post(alice_client, group, "after coming back", client_id=client_id)
    second = group.messages.get(body="after coming back")
    assert response.status_code == 302
    assert response["Location"] == f"{group.get_absolute_url()}#m-{second.pk}"
    assert texts(group) == ["before going back", "after coming back"]


def test_new_text_with_a_used_client_id_shows_in_the_htmx_answer(alice_client, group):
    client_id = str(uuid.uuid4())
    post(alice_client, group, "before going back", client_id=client_id, headers=HTMX)
    response = post(alice_client, group, "after coming back", client_id=client_id, headers=HTMX)
    assert response.status_code == 200
    assert "after coming back" in response.content.decode()
    assert texts(group) == ["before going back", "after coming back"]


def test_the_new_text_sent_twice_with_the_used_id_is_still_one_message(alice_client, group):
    client_id = str(uuid.uuid4())
    post(alice_client, group, "before going back", client_id=client_id)
    first = post(alice_client, group, "after coming back", client_id=client_id)
    again = post(alice_client, group, "after coming back", client_id=client_id)
    assert first["Location"] == again["Location"]
    assert texts(group) == ["before going back", "after coming back"]


def test_another_image_with_a_used_client_id_is_stored_and_the_same_one_is_a_retry(alice_client, group):
    client_id = str(uuid.uuid4())

    def attach(colour):
        upload = SimpleUploadedFile("photo.png", image_bytes("PNG", colour=colour), content_type="image/png")
        data = {"body": "", "client_id": client_id, "image": upload}
        return alice_client.post(reverse("rooms:post_message", args=[group.pk]), data)

    first = attach((200, 30, 30))
    assert attach((200, 30, 30))["Location"] == first["Location"]
    assert attach((30, 30, 200))["Location"] != first["Location"]
    assert group.messages.filter(kind=Message.Kind.TEXT).exclude(image="").count() == 2


def test_the_same_client_id_from_two_people_is_two_messages(alice_client, bob_client, group):
    client_id = str(uuid.uuid4())
    post(alice_client, group, "mine", client_id=client_id)
    post(bob_client, group, "mine too", client_id=client_id)
    assert texts(group) == ["mine", "mine too"]


@pytest.mark.parametrize("body", ["", "   ", "\n\n\t"])
def test_empty_or_whitespace_only_text_is_refused(alice_client, group, body):
    response = post(alice_client, group, body, headers=HTMX)
    assert response.status_code == 422
    assert "Type a message first." in response.content.decode()
    assert texts(group) == []


def test_over_long_text_is_refused_and_stays_in_the_composer(alice_client, group):
    """Nothing typed is lost: the refused text comes back in the composer."""
    body = "é" * 4001
    for headers in ({}, HTMX):
        response = post(alice_client, group, body, headers=headers)
        assert response.status_code == 422
        page = response.content.decode()
        assert "Messages are at most 4,000 characters; this one has 4,001." in page
        assert body in page
    assert texts(group) == []


def test_exactly_4000_characters_is_fine(alice_client, group):
    assert post(alice_client, group, "a" * 4000).status_code == 302
    assert texts(group) == ["a" * 4000]


def test_text_is_stored_trimmed_with_inner_lines_kept(alice_client, group):
    post(alice_client, group, "  line one\r\nline two  \n")
    assert texts(group) == ["line one\nline two"]


def test_markdown_is_rendered_and_raw_html_is_not(alice_client, group):
    post(
        alice_client,
        group,
        "**b** *i* `c` <script>alert(1)</script> [x](javascript:alert(1)) https://example.com",
    )
    html = group.messages.get(kind="text").html
    assert "<strong>b</strong>" in html and "<em>i</em>" in html and "<code>c</code>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html.replace("[x](javascript:alert(1))", "")
    assert '<a href="https://example.com" target="_blank" rel="noopener nofollow ugc">' in html


def test_mentions_of_members_are_highlighted_and_recorded(alice_client, group, bob, mallory):
    post(alice_client, group, "@bob and @mallory, look")
    message = group.messages.get(kind="text")
    assert f'<span class="mention" data-user-id="{bob.pk}">@bob</span>' in message.html
    assert "@mallory" in message.html and f'data-user-id="{mallory.pk}"' not in message.html
    assert message.mentioned_user_ids == [bob.pk]


def test_reply_shows_the_quoted_original(alice_client, bob_client, group):
    post(alice_client, group, "Where shall we eat?")
    original = group.messages.get(body="Where shall we eat?")
    post(bob_client, group, "The harbour place", reply_to=original.pk)
    reply = group.messages.get(body="The harbour place")
    assert reply.reply_to == original
    page = alice_client.get(group.get_absolute_url()).content.decode()
    # The quote leads to the original, wherever it is in the history.
    assert f'href="/r/{group.pk}/m/{original.seq}/" data-quote-seq="{original.seq}"' in page
    assert 'class="message__quote-text">Where shall we eat?<' in page


def test_replying_to_a_message_in_another_room_is_refused(alice_client, group, direct):
    other = services.do_post_message(membership(direct, direct.memberships.first().user), "private").message
    response = post(alice_client, group, "sneaky", reply_to=other.pk)
    assert response.status_code == 422
    assert "not in this room" in response.content.decode()
    assert "sneaky" in response.content.decode()
    assert texts(group) == []


def test_composer_offers_the_reply_target(alice_client, group):
    post(alice_client, group, "original")
    original = group.messages.get(body="original")
    response = alice_client.get(
        reverse("rooms:composer", args=[group.pk]), {"reply_to": original.pk, "body": "draft"}, **HTMX
    )
    body = response.content.decode()
    assert "Replying to" in body and "original" in body
    assert f'name="reply_to" value="{original.pk}"' in body
    assert "draft</textarea>" in body  # what was being typed is kept


def test_author_edits_their_message_which_shows_edited(alice_client, group):
    post(alice_client, group, "Helo")
    message = group.messages.get(body="Helo")
    url = reverse("rooms:edit_message", args=[group.pk, message.pk])
    form = alice_client.get(url, **HTMX)
    assert "\nHelo</textarea>" in form.content.decode()
    response = alice_client.post(url, {"body": "Hello"}, **HTMX)
    assert response.status_code == 200
    assert "edited" in response.content.decode()
    message.refresh_from_db()
    assert message.body == "Hello" and message.edited_at is not None


def test_an_edit_to_empty_text_is_refused_and_keeps_the_original(alice_client, group):
    post(alice_client, group, "keep me")
    message = group.messages.get(body="keep me")
    response = alice_client.post(reverse("rooms:edit_message", args=[group.pk, message.pk]), {"body": " "})
    assert response.status_code == 422
    assert "Type a message first." in response.content.decode()
    message.refresh_from_db()
    assert message.body == "keep me" and message.edited_at is None


def test_author_deletes_their_message_and_everyone_sees_message_deleted(alice_client, bob_client, group):
    post(alice_client, group, "oops, wrong room")
    message = group.messages.get(body="oops, wrong room")
    response = alice_client.post(reverse("rooms:delete_message", args=[group.pk, message.pk]), **HTMX)
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.deleted_at is not None and message.body == "" and message.html == ""
    page = bob_client.get(group.get_absolute_url()).content.decode()
    assert "message deleted" in page
    assert "oops, wrong room" not in page


def test_an_edit_that_loses_the_race_to_a_delete_brings_no_text_back(alice, bob, group):
    # Alice opened her message's edit form; meanwhile an admin (here: she herself, from
    # another tab) deleted it. Her edit must not write the text back where search finds it.
    message = services.do_post_message(membership(group, alice), "secret plans").message
    stale = Message.objects.get(pk=message.pk)
    services.do_delete_message(alice, Message.objects.get(pk=message.pk))
    with pytest.raises(ValidationError):
        services.do_edit_message(alice, stale, "new secret plans")
    message.refresh_from_db()
    assert message.is_deleted and message.body == "" and message.html == ""
    assert search.search_messages(alice, "secret").hits == []


@pytest.mark.parametrize("action", ["rooms:edit_message", "rooms:delete_message"])
def test_nobody_edits_or_deletes_another_persons_message(bob_client, alice_client, group, action):
    post(alice_client, group, "alice's words")
    message = group.messages.get(body="alice's words")
    response = bob_client.post(reverse(action, args=[group.pk, message.pk]), {"body": "bob's words"})
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.body == "alice's words" and message.deleted_at is None


def test_system_messages_cannot_be_edited_or_deleted(alice_client, group):
    system = group.messages.filter(kind="system").first()
    for action in ("rooms:edit_message", "rooms:delete_message"):
        response = alice_client.post(reverse(action, args=[group.pk, system.pk]), {"body": "x"})
        assert response.status_code == 403


def test_own_messages_carry_edit_and_delete_controls_for_the_viewer(alice_client, bob_client, group):
    post(alice_client, group, "mine")
    message = group.messages.get(body="mine")
    alice_page = alice_client.get(group.get_absolute_url()).content.decode()
    bob_page = bob_client.get(group.get_absolute_url()).content.decode()
    assert f'class="message is-mine" id="m-{message.pk}"' in alice_page
    assert f'class="message" id="m-{message.pk}"' in bob_page


def test_a_member_removed_after_their_page_loaded_is_refused_at_the_lock(alice, bob, group):
    """The post checks membership once, under the room's lock: a membership read before the
    removal (a page, a request already past its view) posts nothing."""
    stale = membership(group, bob)
    services.do_remove_member(alice, group, bob)
    with pytest.raises(PermissionDenied):
        services.do_post_message(stale, "still here?")
    assert "still here?" not in texts(group)


def test_a_former_member_posting_from_the_composer_gets_404(alice, bob, bob_client, group):
    services.do_remove_member(alice, group, bob)
    for headers in ({}, HTMX):
        response = post(bob_client, group, "let me back in", headers=headers)
        assert response.status_code == 404
    assert "let me back in" not in texts(group)


def test_a_former_member_resending_a_message_they_sent_gets_404_not_the_message(
    alice, bob, alice_client, bob_client, group
):
    """The room no longer exists for them: a resend (the same client_id and text) must not
    show them the message as it is now, with what others did to it since."""
    client_id = uuid.uuid4()
    response = post(bob_client, group, "see you at noon", client_id=client_id, headers=COMPOSER)
    assert response.status_code == 200
    sent = group.messages.get(body="see you at noon")
    services.do_remove_member(alice, group, bob)
    services.do_toggle_reaction(membership(group, alice), sent, "👍")
    for headers in ({}, HTMX, COMPOSER):
        response = post(bob_client, group, "see you at noon", client_id=client_id, headers=headers)
        assert response.status_code == 404
        assert "👍" not in response.content.decode()
    assert texts(group) == ["see you at noon"]


def test_a_text_message_costs_a_fixed_number_of_queries(alice_client, group, django_assert_num_queries):
    """The composer's post, counted: the session's user, the member's row with the room
    locked (the one access check), the client_id, the message, the room's and my read
    position, the push job, the search index and the assistant's settings. A query more
    is a regression to look at, whatever the backend."""
    post(alice_client, group, "warm up", headers=COMPOSER)
    with django_assert_num_queries(POST_QUERIES[connection.vendor]) as captured:
        response = post(alice_client, group, "hello", headers=COMPOSER)
    assert response.status_code == 200, [q["sql"] for q in captured.captured_queries]
    assert response["HX-Reswap"] == "none"
