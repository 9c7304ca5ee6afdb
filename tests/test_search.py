"""Message search: what it finds, for whom, with which filters, and what it costs.

Every test here runs on the database the suite runs on: SQLite (the FTS5 table) by default,
PostgreSQL (the generated tsvector column) with DATABASE_URL. The few that look at one
backend's own machinery say so."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts.services import do_block
from assistant.private import do_open_private_room
from rooms import services
from rooms.models import Membership, Message, Room
from rooms.services import moderation, search
from rooms.services.search import parse_query, search_messages
from tests.conftest import HTMX, image_bytes, make_user, membership

pytestmark = pytest.mark.django_db


def say(room, user, body, **kwargs):
    return services.do_post_message(membership(room, user), body, **kwargs).message


def found(user, text, **kwargs) -> list[str]:
    return [hit.message.body for hit in search_messages(user, text, **kwargs).hits]


# What it finds


def test_a_word_finds_the_messages_that_hold_it_newest_first(alice, bob, group):
    say(group, alice, "Lunch at the station?")
    say(group, bob, "Nothing to do with food")
    say(group, bob, "The station cafe opens at nine")
    assert found(alice, "station") == ["The station cafe opens at nine", "Lunch at the station?"]


def test_a_word_finds_longer_words_it_starts(alice, bob, group):
    say(group, bob, "Meeting moved to Tuesday")
    assert found(alice, "meet") == ["Meeting moved to Tuesday"]
    assert found(alice, "MEETING") == ["Meeting moved to Tuesday"]


def test_every_word_must_be_there(alice, bob, group):
    say(group, bob, "red train")
    say(group, bob, "blue train")
    assert found(alice, "blue train") == ["blue train"]
    assert found(alice, "green train") == []


def test_a_quoted_phrase_finds_those_words_together(alice, bob, group):
    say(group, bob, "the train leaves early")
    say(group, bob, "leaves on the train")
    assert found(alice, '"train leaves"') == ["the train leaves early"]
    # Quoted words are whole words: "lea" is not "leaves".
    assert found(alice, '"train lea"') == []


def test_punctuation_and_markup_in_the_search_are_only_separators(alice, bob, group):
    say(group, bob, "see you at 9:40, e-mail me")
    assert found(alice, "e-mail") == ["see you at 9:40, e-mail me"]
    assert found(alice, "9:40 *) ^(' -") == ["see you at 9:40, e-mail me"]
    assert found(alice, '"e-mail me') == ["see you at 9:40, e-mail me"]
    assert found(alice, "NEAR(a b) AND") == []


def test_system_messages_are_not_found(alice, bob, group):
    # "Alice Liddell created the group “Trip planning”" is in the room.
    assert found(alice, "created") == []


def test_an_edit_changes_what_finds_the_message(alice, bob, group):
    message = say(group, alice, "dinner at eight")
    services.do_edit_message(alice, message, "supper at nine")
    assert found(bob, "dinner") == []
    assert found(bob, "supper") == ["supper at nine"]


def test_a_deleted_message_is_not_found(alice, bob, group):
    message = say(group, alice, "secret plans")
    services.do_delete_message(alice, message)
    assert found(bob, "secret") == []


def test_a_message_removed_by_an_admin_or_a_moderator_is_not_found(alice, bob, carol, group):
    first = say(group, bob, "spam spam one")
    second = say(group, bob, "spam spam two")
    services.do_delete_message(alice, first)
    report = moderation.do_report_message(carol, membership(group, carol), second, reason="spam", text="")
    staff = make_user("moderator")
    staff.is_staff = True
    staff.save()
    moderation.do_remove_reported_message(staff, report)
    assert found(carol, "spam") == []


def fts_rows() -> list[tuple[int, str]]:
    """The SQLite index's rows (none to look at on PostgreSQL, whose index is the text)."""
    if connection.vendor != "sqlite":
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT rowid, body FROM rooms_message_fts ORDER BY rowid")
        return cursor.fetchall()


def test_a_deleted_account_leaves_no_text_in_the_index(alice, bob, group):
    """Deleting an account with its messages, and its private room, takes their text out
    of the index too: nothing of it stays in the database."""
    from privacy.services import do_delete_account

    say(group, bob, "bob's secret plan")
    say(group, alice, "alice stays")
    say(do_open_private_room(bob), bob, "bob's diary")
    do_delete_account(bob, delete_messages=True)
    assert found(alice, "secret") == [] and found(alice, "diary") == []
    assert [body for _, body in fts_rows() if "bob" in body] == []
    assert found(alice, "stays") == ["alice stays"]


def test_the_assistants_finished_reply_is_found(alice, group):
    reply = services.do_post_assistant_message(group.pk, persona="Planner")
    assert found(alice, "umbrella") == []
    services.do_update_assistant_message(reply, body="Bring an umbrella", state=Message.State.DONE)
    assert found(alice, "umbrella") == ["Bring an umbrella"]


def test_results_come_a_page_at_a_time(alice, bob, group):
    for i in range(5):
        say(group, bob, f"ticket number {i}")
    first = search_messages(alice, "ticket", size=2)
    assert [h.message.body for h in first.hits] == ["ticket number 4", "ticket number 3"]
    second = search_messages(alice, "ticket", size=2, before=first.next_before)
    assert [h.message.body for h in second.hits] == ["ticket number 2", "ticket number 1"]
    third = search_messages(alice, "ticket", size=2, before=second.next_before)
    assert [h.message.body for h in third.hits] == ["ticket number 0"]
    assert third.next_before is None


# Snippets


def test_the_snippet_highlights_the_match_and_escapes_the_text(alice, bob, group):
    say(group, bob, "<script>alert(1)</script> & the <b>needle</b> is here")
    [hit] = search_messages(alice, "needle").hits
    assert "<script>" not in hit.snippet and "<b>" not in hit.snippet
    assert "&lt;script&gt;" in hit.snippet
    assert "<mark>needle</mark>" in hit.snippet


def test_a_message_cannot_forge_a_highlight(alice, bob, group):
    say(group, bob, f"{search.START}fake{search.STOP} and a real needle")
    [hit] = search_messages(alice, "needle").hits
    assert "<mark>fake</mark>" not in hit.snippet
    assert "<mark>needle</mark>" in hit.snippet


def test_a_long_message_shows_the_part_around_the_match(alice, bob, group):
    body = " ".join(["filler"] * 200 + ["needle"] + ["filler"] * 200)
    say(group, bob, body)
    [hit] = search_messages(alice, "needle").hits
    assert "<mark>needle</mark>" in hit.snippet
    assert len(hit.snippet) < 400


def test_render_snippet_drops_stray_markers():
    marked = f"a {search.STOP}b{search.START} <c> {search.START}d{search.STOP}"
    assert search.render_snippet(marked) == "a b<mark> &lt;c&gt; </mark><mark>d</mark>"


# Who finds what


def test_nobody_finds_messages_of_a_room_they_are_not_in(alice, bob, mallory, group):
    say(group, bob, "the password is swordfish")
    assert found(mallory, "swordfish") == []
    assert found(alice, "swordfish") == ["the password is swordfish"]


def test_a_room_i_left_is_no_longer_searched(alice, bob, carol, group):
    say(group, bob, "before carol left")
    services.do_leave_room(membership(group, carol))
    assert found(carol, "carol") == []


def test_a_late_joiner_finds_the_history_the_room_page_shows_them(alice, bob, group):
    say(group, bob, "before dave came")
    dave = make_user("dave")
    services.do_add_members(alice, group, [dave])
    assert found(dave, "before") == ["before dave came"]


def test_someone_elses_private_assistant_room_is_never_searched(alice, bob):
    room = do_open_private_room(alice)
    say(room, alice, "my secret diary")
    assert found(alice, "diary") == ["my secret diary"]
    # Even with a membership row that should not exist, bob does not read it.
    Membership.objects.create(room=room, user=bob)
    assert found(bob, "diary") == []


def test_messages_from_someone_i_blocked_are_left_out(alice, bob, carol, group):
    say(group, bob, "hello from bob")
    say(group, carol, "hello from carol")
    do_block(alice, bob)
    assert found(alice, "hello") == ["hello from carol"]
    # Only for the blocker.
    assert len(found(carol, "hello")) == 2


def test_a_message_request_not_yet_accepted_is_not_searched(alice, bob):
    room = services.do_open_direct_room(alice, bob)
    say(room, alice, "buy cheap watches")
    assert found(bob, "watches") == []
    services.do_accept_request(membership(room, bob))
    assert found(bob, "watches") == ["buy cheap watches"]


def test_an_archived_room_is_not_searched(alice, bob, group):
    say(group, bob, "archived words")
    Room.objects.filter(pk=group.pk).update(archived_at=timezone.now())
    assert found(bob, "archived") == []


# Filters


def test_from_finds_one_persons_messages(alice, bob, group):
    say(group, alice, "alice says hi")
    say(group, bob, "bob says hi")
    assert found(alice, "hi from:bob") == ["bob says hi"]
    assert found(alice, "hi from:@BOB") == ["bob says hi"]
    assert found(alice, "hi from:me") == ["alice says hi"]
    assert found(alice, "from:bob") == ["bob says hi"]
    assert found(alice, "hi from:nobody") == []


def test_in_names_a_room_by_name_id_or_the_other_person(alice, bob, group, direct):
    say(group, bob, "pack the tent")
    say(direct, bob, "pack your bag")
    assert found(alice, 'pack in:"Trip planning"') == ["pack the tent"]
    assert found(alice, "pack in:trip") == ["pack the tent"]
    assert found(alice, "pack in:planning") == ["pack the tent"]
    assert found(alice, f"pack in:{group.pk}") == ["pack the tent"]
    assert found(alice, "pack in:bob") == ["pack your bag"]
    assert found(alice, "pack in:@bob") == ["pack your bag"]
    results = search_messages(alice, "pack in:nowhere")
    assert results.hits == [] and results.notes


def test_in_a_room_i_am_not_in_finds_nothing(alice, bob, mallory, group):
    say(group, bob, "members only")
    assert found(mallory, f"members in:{group.pk}") == []
    assert found(mallory, 'in:"Trip planning"') == []


def test_has_image_finds_messages_with_a_picture(alice, bob, group):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from rooms.attachments import make_attachment

    upload = SimpleUploadedFile("p.png", image_bytes(), content_type="image/png")
    say(group, bob, "the view from the top", image=make_attachment(upload))
    say(group, bob, "the view without a picture")
    assert found(alice, "view has:image") == ["the view from the top"]
    assert [h.snippet for h in search_messages(alice, "has:image").hits] == ["the view from the top"]


def test_has_file_finds_messages_with_a_file_that_is_not_a_picture(alice, bob, group):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from rooms.attachments import file_attachment, make_attachment

    pdf = SimpleUploadedFile("minutes.pdf", b"%PDF-1.4 minutes", content_type="application/pdf")
    say(group, bob, "the minutes attached", file=file_attachment(pdf))
    picture = SimpleUploadedFile("p.png", image_bytes(), content_type="image/png")
    say(group, bob, "the minutes as a picture", image=make_attachment(picture))
    say(group, bob, "the minutes, no file")
    assert found(alice, "minutes has:file") == ["the minutes attached"]
    assert found(alice, "minutes has:image") == ["the minutes as a picture"]
    [hit] = search_messages(alice, "has:file").hits
    assert hit.message.file_name == "minutes.pdf"


def test_dates_bound_the_search(alice, bob, group):
    old = say(group, bob, "report draft one")
    new = say(group, bob, "report draft two")
    Message.objects.filter(pk=old.pk).update(created_at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    Message.objects.filter(pk=new.pk).update(created_at=dt.datetime(2026, 3, 14, 12, tzinfo=dt.UTC))
    assert found(alice, "report before:2026-03-14") == ["report draft one"]
    assert found(alice, "report after:2026-03-01") == ["report draft two"]
    assert found(alice, "report after:2026-02-28 before:2026-03-02") == ["report draft one"]
    assert found(alice, "report on:2026-03-14") == ["report draft two"]
    assert found(alice, "after:2026-03-13") == ["report draft two"]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("x" * 201, "at most 200 characters"),
        ("after:yesterday", "YYYY-MM-DD"),
        ("before:2026-02-30", "YYYY-MM-DD"),
        ("has:video", "has:image or has:file"),
        ("from:", "needs something after the colon"),
        ("after:2026-03-14 before:2026-03-15", "holds no day"),
        (" ".join(["word"] * 13), "at most 12 words"),
    ],
)
def test_a_search_that_cannot_be_read_says_why(alice, text, complaint):
    with pytest.raises(ValidationError) as error:
        parse_query(text)
    assert complaint in error.value.messages[0]


def test_nothing_typed_finds_nothing(alice, bob, group):
    say(group, bob, "something")
    assert found(alice, "") == []
    assert found(alice, "   ") == []
    assert found(alice, "!!! ...") == []


# The index itself


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 table is SQLite's index")
def test_sqlite_keeps_the_fts_table_in_step_with_the_messages(alice, bob, group):
    def indexed():
        with connection.cursor() as cursor:
            cursor.execute("SELECT rowid, body, room, author FROM rooms_message_fts ORDER BY rowid")
            return cursor.fetchall()

    message = say(group, bob, "first words")
    room, author = f"r{group.pk}", f"a{bob.pk}"
    assert indexed() == [(message.pk, "first words", room, author)]
    services.do_edit_message(bob, message, "second words")
    assert indexed() == [(message.pk, "second words", room, author)]
    services.do_delete_message(bob, message)
    assert indexed() == []


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 table is SQLite's index")
@pytest.mark.parametrize("rooms_in_match", [0, 100])
def test_sqlite_finds_the_same_whether_the_index_or_the_join_picks_the_rooms(
    alice, bob, carol, mallory, group, direct, monkeypatch, rooms_in_match
):
    """Up to FTS_ROOMS_IN_MATCH rooms the FTS5 query names them; beyond, the join does."""
    monkeypatch.setattr(search, "FTS_ROOMS_IN_MATCH", rooms_in_match)
    elsewhere = services.do_create_group(mallory, "Elsewhere", [carol])
    say(elsewhere, carol, "pack for elsewhere")
    say(group, carol, "pack the tent")
    say(direct, bob, "pack your bag")
    assert found(alice, "pack") == ["pack your bag", "pack the tent"]
    assert found(alice, "pack in:bob") == ["pack your bag"]
    assert found(alice, "pack from:carol") == ["pack the tent"]
    assert found(carol, "pack") == ["pack the tent", "pack for elsewhere"]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the FTS5 table is SQLite's index")
def test_sqlite_walks_the_index_newest_first_without_sorting(alice, bob, group):
    """The plan reads FTS5 in rowid order and stops at the page's end: no temporary B-tree
    that would hold (and make a snippet for) every match."""
    say(group, bob, "plan")
    scope = search._scoped(alice, parse_query("plan"))
    plan = search.sqlite_matching(scope, parse_query("plan").terms)[:21].explain()
    assert "TEMP B-TREE" not in plan.upper(), plan


@pytest.mark.services
def test_postgres_can_answer_a_match_from_the_gin_index(alice, bob, group):
    """The index is on the very column the search compares (which plan wins with real
    numbers is bench/search.py's to show)."""
    say(group, bob, "the one with a needle")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    needle = search.postgres_query(parse_query("needle").terms)
    query = search.postgres_matching(Message.objects.all(), needle)
    assert "rooms_message_search" in query.explain()
    assert found(alice, "needle") == ["the one with a needle"]


# The page


def test_the_search_page_shows_room_author_time_and_snippet_linking_to_the_message(alice_client, bob, group):
    message = say(group, bob, "the tickets are booked")
    response = alice_client.get(reverse("rooms:search"), {"q": "tickets"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Trip planning" in page and "Bob Builder" in page
    assert "<mark>tickets</mark>" in page
    assert f'href="/r/{group.pk}/m/{message.seq}/"' in page
    assert f'datetime="{message.created_at.isoformat()}' in page or "<time" in page


def test_the_search_page_says_why_a_search_cannot_be_read(alice_client):
    response = alice_client.get(reverse("rooms:search"), {"q": "after:soon"})
    assert response.status_code == 422
    assert "YYYY-MM-DD" in response.content.decode()


def test_the_search_page_without_a_search_explains_the_filters(alice_client):
    page = alice_client.get(reverse("rooms:search")).content.decode()
    assert "from:" in page and "has:image" in page


def test_more_results_load_with_htmx(alice_client, bob, group, settings):
    settings.SEARCH_RESULTS_PER_PAGE = 2
    for i in range(3):
        say(group, bob, f"ticket {i}")
    page = alice_client.get(reverse("rooms:search"), {"q": "ticket"}).content.decode()
    assert "More results" in page
    results = search_messages(bob, "ticket", size=2)
    response = alice_client.get(
        reverse("rooms:search"), {"q": "ticket", "before": results.next_before}, **HTMX
    )
    fragment = response.content.decode()
    assert "<html" not in fragment and "<mark>ticket</mark> 0" in fragment
    assert "More results" not in fragment


@pytest.mark.parametrize("before", ["abc", "-1", "0", "99999999999999999999"])
def test_a_forged_page_cursor_is_ignored(alice_client, before):
    response = alice_client.get(reverse("rooms:search"), {"q": "ticket", "before": before})
    assert response.status_code == 200


def test_search_results_cost_a_fixed_number_of_queries(
    alice_client, alice, bob, carol, group, direct, django_assert_max_num_queries
):
    """The session's user, the rooms, the matches, their messages (PostgreSQL: and their
    headlines) and the sidebar (three, naming the results' rooms too); one more for `from:`
    someone else and for `in:` naming a person: 10 at most, however many results."""
    for i in range(30):
        say(group, bob if i % 2 else carol, f"budget line {i}")
        say(direct, bob, f"budget talk {i}")
    for text in ("budget", "budget from:bob in:bob", "from:carol", f"budget in:{group.pk} after:2000-01-01"):
        with django_assert_max_num_queries(10):
            response = alice_client.get(reverse("rooms:search"), {"q": text})
        assert response.status_code == 200
        assert response.content.decode().count('class="search-hit"') >= 15, text
    # The next page of results: no sidebar, one query for its rooms' names.
    more = {"q": "budget", "before": search_messages(alice, "budget").next_before}
    with django_assert_max_num_queries(6):
        response = alice_client.get(reverse("rooms:search"), more, **HTMX)
    assert response.content.decode().count('class="search-hit"') == 20


# The edges of what can be typed


@pytest.mark.parametrize(
    "text",
    [
        "x after:9999-12-31",
        "x on:9999-12-31",
        "x before:9999-12-31",
        "x on:0001-01-01",
        "x before:0001-01-01",
        "x after:0001-01-01",
        "after:0001-01-01 before:0001-01-01",
    ],
)
@pytest.mark.parametrize("zone", ["Asia/Tokyo", "UTC", "America/Los_Angeles"])
def test_a_date_at_the_ends_of_the_calendar_is_refused_never_an_error(
    alice_client, bob, group, settings, text, zone
):
    settings.TIME_ZONE = zone
    say(group, bob, "x marks the spot")
    response = alice_client.get(reverse("rooms:search"), {"q": text})
    assert response.status_code == 422
    page = response.content.decode()
    assert "takes a date from 0001-01-02 to 9999-12-30" in page
    assert 'value="' + text + '"' in page  # kept in the box to correct


@pytest.mark.parametrize(
    "text", ["x after:9999-12-30", "x before:0001-01-02", "x on:9999-12-30", "x on:0001-01-02"]
)
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_the_dates_next_to_the_ends_still_search(alice, bob, group, text, zone):
    say(group, bob, "x marks the spot")
    with timezone.override(zone):
        assert found(alice, text) == []


@pytest.mark.parametrize(
    "text",
    ["from:a\x00", "a\x00b", "in:\x00", "in:a\x00b", "has:image\x00", '"a\x00b"', "a\x07b", "from:\x1bbob"],
)
def test_control_characters_are_refused_never_an_error(alice_client, bob, group, text):
    say(group, bob, "a b")
    response = alice_client.get(reverse("rooms:search"), {"q": text})
    assert response.status_code == 422
    assert "control characters" in response.content.decode()


def test_a_tab_or_a_new_line_is_only_a_space(alice, bob, group):
    say(group, bob, "tickets booked")
    assert found(alice, "tickets\tbooked\r\n") == ["tickets booked"]
