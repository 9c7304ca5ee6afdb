"""The room page and the sidebar: history, paging, unread counts, and what they cost."""

import html
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from assistant import runner
from assistant.models import AssistantRun
from assistant.services import do_update_assistant
from rooms import services
from rooms.models import Message, Room
from tests.conftest import HTMX, client_for, make_user, membership

pytestmark = pytest.mark.django_db


def fill(room, author, count):
    """`count` messages in `room`, written in bulk the way the service numbers them."""
    room.refresh_from_db()
    now = timezone.now()
    rows = [
        Message(
            room=room,
            seq=room.last_seq + i,
            author=author,
            body=f"message {i}",
            html=f"<p>message {i}</p>",
            created_at=now,
        )
        for i in range(1, count + 1)
    ]
    Message.objects.bulk_create(rows)
    last = Message.objects.get(room=room, seq=room.last_seq + count)
    Room.objects.filter(pk=room.pk).update(last_seq=last.seq, last_message=last, last_activity_at=now)
    room.refresh_from_db()


def history(page) -> str:
    """The message list of a room page, without the sidebar's previews."""
    return page[page.index('id="messages"') :]


def test_room_page_shows_the_newest_50_oldest_first(alice_client, alice, group):
    fill(group, alice, 120)
    body = history(alice_client.get(group.get_absolute_url()).content.decode())
    assert "message 120" in body and "message 71<" in body
    assert "message 70<" not in body
    assert body.index("message 71<") < body.index("message 120<")
    assert "Load older messages" in body


def test_older_messages_load_50_at_a_time_with_htmx(alice_client, alice, group):
    fill(group, alice, 120)
    oldest_shown = group.last_seq - 49
    response = alice_client.get(group.get_absolute_url(), {"before": oldest_shown}, **HTMX)
    body = response.content.decode()
    assert "<html" not in body
    assert body.count("data-seq=") == 50
    assert f"before={oldest_shown - 50}" in body  # the next trigger
    last_page = alice_client.get(group.get_absolute_url(), {"before": 3}, **HTMX).content.decode()
    assert "Load older messages" not in last_page
    assert "beginning of the conversation" in last_page


def test_older_messages_work_without_javascript(alice_client, alice, group):
    fill(group, alice, 120)  # after the 2 system messages: message N has seq N + 2
    page = alice_client.get(group.get_absolute_url(), {"before": 100}).content.decode()
    body = history(page)
    assert "<html" in page and "Jump to latest" in body
    assert "message 48<" in body and "message 97<" in body
    assert "message 47<" not in body and "message 98<" not in body
    # Newer ones follow by a link too (and load as the reader reaches them, with htmx).
    assert f'href="/r/{group.pk}/?after=99"' in body and "data-detached" in body


@pytest.mark.parametrize("before", ["abc", "-5", "0", "99999999999999999999"])
def test_forged_paging_values_do_not_break_the_page(alice_client, group, before):
    assert alice_client.get(group.get_absolute_url(), {"before": before}).status_code == 200


def test_room_page_and_sidebar_cost_the_same_with_500_messages_and_30_rooms(
    alice_client, alice, bob, django_assert_max_num_queries
):
    room = services.do_create_group(alice, "Busy", [bob])
    fill(room, bob, 500)
    for i in range(15):
        services.do_create_group(alice, f"Group {i}", [bob])
        services.do_open_direct_room(alice, make_user(f"friend{i}"))
    # User, membership (with the room's assistant, named in the composer hint), the page
    # of messages, my read position (this first view reads them), the sidebar and its direct
    # partners, the people I blocked (whose messages the page collapses), the members, and
    # my private answers in the room (the private panel).
    with django_assert_max_num_queries(9):
        response = alice_client.get(room.get_absolute_url())
    assert response.status_code == 200
    # Session, user, the sidebar's rooms and direct partners, and the people I blocked.
    with django_assert_max_num_queries(5):
        assert alice_client.get(reverse("rooms:index")).status_code == 200
    with django_assert_max_num_queries(4):
        alice_client.get(room.get_absolute_url(), {"before": 300}, **HTMX)


def test_a_room_of_50_costs_seven_queries_and_the_same_with_more_messages(
    alice_client, alice, django_assert_num_queries
):
    """Issue #11's room page: 50 members and the newest 50 messages. Session (cached), user,
    membership with the room and its assistant, the page of messages, the sidebar, the
    people I blocked, the members, my private answers."""
    people = [make_user(f"member{i}") for i in range(49)]
    room = services.do_create_group(alice, "Fifty", people)
    do_update_assistant(alice, room, name="Planner", personality="", reply_mode="mention")
    fill(room, people[0], 100)
    alice_client.get(room.get_absolute_url())
    with django_assert_num_queries(7):
        page = alice_client.get(room.get_absolute_url()).content.decode()
    assert "@Planner" in page and 'data-mention="Planner"' in page
    assert history(page).count("data-seq=") == 50 and "message 100<" in page
    fill(room, people[1], 1000)
    alice_client.get(room.get_absolute_url())  # reads them: one UPDATE more, once
    with django_assert_num_queries(7):
        page = alice_client.get(room.get_absolute_url()).content.decode()
    assert "message 1000<" in page and "message 950<" not in history(page)


def test_the_page_names_the_default_assistant_without_asking_for_its_settings(
    alice_client, alice, bob, django_assert_num_queries
):
    # No settings row: room.assistant raises without a query and the defaults show.
    room = services.do_create_group(alice, "No settings", [bob])
    alice_client.get(room.get_absolute_url())
    with django_assert_num_queries(7):
        page = alice_client.get(room.get_absolute_url()).content.decode()
    assert 'data-mention="Assistant"' in page and "@assistant" in page


def test_compiled_queries_answer_for_each_room_and_person(alice, bob, carol, group):
    """The page's queries are compiled once (rooms/compiled.py) and run with other ids."""
    other = services.do_create_group(bob, "Other", [carol])
    fill(group, alice, 3)
    fill(other, bob, 2)
    alice_client, carol_client = client_for(alice), client_for(carol)
    mine = history(alice_client.get(group.get_absolute_url()).content.decode())
    theirs = history(carol_client.get(other.get_absolute_url()).content.decode())
    assert "message 3<" in mine and "message 3<" not in theirs and "message 2<" in theirs
    assert alice_client.get(other.get_absolute_url()).status_code == 404
    sidebar = alice_client.get(reverse("rooms:index")).content.decode()
    assert f'id="sidebar-entry-{group.pk}"' in sidebar and f'id="sidebar-entry-{other.pk}"' not in sidebar


def test_sidebar_lists_my_rooms_by_last_activity_with_previews(alice_client, alice, bob, carol):
    older = services.do_create_group(alice, "Older", [bob])
    services.do_create_group(alice, "Newer", [carol])
    direct = services.do_open_direct_room(alice, bob)
    services.do_post_message(membership(older, bob), "bump")
    body = alice_client.get(reverse("rooms:index")).content.decode()
    assert body.index("Older") < body.index("Newer")
    assert "Bob Builder: bump" in body
    assert f'id="sidebar-room-{direct.pk}"' in body
    assert "No messages yet" in body  # the direct room has none


def sidebar_preview(client, room) -> str:
    """The preview line under the room in the sidebar fragment, as text."""
    page = client.get(reverse("rooms:sidebar"), **HTMX).content.decode()
    match = re.search(rf'id="sidebar-preview-{room.pk}"[^>]*>(.*?)</span>', page, re.S)
    return html.unescape(match.group(1))


def test_the_sidebar_says_when_the_assistant_could_not_reply(fake_openai, bob_client, alice, group):
    """A failed reply without text is not an empty "Planner:"."""
    do_update_assistant(alice, group, name="Planner", personality="", reply_mode="mention")
    fake_openai.queue(status=400)
    services.do_post_message(membership(group, alice), "@Planner where should we go?")
    runner.run_pending()
    assert AssistantRun.objects.get().status == AssistantRun.Status.FAILED
    assert sidebar_preview(bob_client, group) == "Planner: couldn't reply"


@pytest.mark.parametrize(
    ("state", "body", "preview"),
    [
        (Message.State.STREAMING, "", "Planner is thinking…"),
        (Message.State.STREAMING, "Try the", "Planner: Try the"),
        (Message.State.STOPPED, "", "Planner: stopped before replying"),
        (Message.State.STOPPED, "Try the", "Planner: Try the"),
        (Message.State.FAILED, "", "Planner: couldn't reply"),
        (Message.State.DONE, "Try the lake.", "Planner: Try the lake."),
    ],
)
def test_the_sidebar_says_where_an_assistant_reply_is(alice, bob_client, group, state, body, preview):
    group.refresh_from_db()
    reply = Message.objects.create(
        room=group, seq=group.last_seq + 1, kind=Message.Kind.ASSISTANT, persona="Planner", state=state
    )
    Room.objects.filter(pk=group.pk).update(last_seq=reply.seq, last_message=reply)
    services.do_update_assistant_message(reply, body=body, state=state)
    assert sidebar_preview(bob_client, group) == preview


def test_unread_counts_rise_with_others_messages_and_clear_when_read(
    alice_client, bob_client, alice, bob, group
):
    badge = f'id="sidebar-badge-{group.pk}" data-count='
    alice_view = alice_client.get(reverse("rooms:index")).content.decode()
    assert badge + '"0"' in alice_view  # her own creation messages are read
    for text in ("one", "two", "three"):
        services.do_post_message(membership(group, bob), text)
    assert badge + '"3"' in alice_client.get(reverse("rooms:index")).content.decode()
    alice_client.get(group.get_absolute_url())
    assert badge + '"0"' in alice_client.get(reverse("rooms:index")).content.decode()


def test_own_messages_never_count_as_unread(alice_client, alice, group):
    services.do_post_message(membership(group, alice), "me")
    assert membership(group, alice).last_read_seq == Room.objects.get(pk=group.pk).last_seq


def test_mark_read_moves_forward_only_and_never_past_the_end(alice_client, alice, bob, group):
    for text in ("a", "b", "c"):
        services.do_post_message(membership(group, bob), text)
    group.refresh_from_db()
    url = reverse("rooms:mark_read", args=[group.pk])
    assert alice_client.post(url, {"seq": group.last_seq - 1}).status_code == 204
    assert membership(group, alice).last_read_seq == group.last_seq - 1
    alice_client.post(url, {"seq": 1})
    assert membership(group, alice).last_read_seq == group.last_seq - 1
    alice_client.post(url, {"seq": 10_000})
    assert membership(group, alice).last_read_seq == group.last_seq
    assert alice_client.post(url, {"seq": "x"}).status_code == 400


def test_a_forged_read_position_is_refused_not_a_crash(alice_client, group):
    response = alice_client.post(reverse("rooms:mark_read", args=[group.pk]), {"seq": str(10**30)})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("data", "files"),
    [
        (None, None),
        ({"body": "a <b>\"quote\"</b> & 'x'", "reply_to": "12", "client_id": "not-a-uuid"}, None),
        ({"body": "", "reply_to": "<script>"}, None),
    ],
)
def test_the_composer_widgets_draw_what_djangos_templates_draw(data, files):
    """The composer's widgets are drawn with format_html (rooms.forms._DirectWidget): the
    same markup as Django's widget templates, for an empty, a filled and a refused form,
    in an encrypted room's composer too."""
    from django import forms as django_forms

    from rooms.forms import MessageForm

    for encrypted in (False, True):
        form = MessageForm(data, files)
        if encrypted:
            form.keep_text_in_page()
        if data is not None:
            form.is_valid()
        for name in ("body", "client_id", "reply_to", "file"):
            bound = form[name]
            widget = bound.field.widget
            plain = next(c for c in type(widget).__mro__ if c.__module__ == django_forms.widgets.__name__)
            attrs = bound.build_widget_attrs({}, widget)
            if bound.auto_id and "id" not in widget.attrs:
                attrs.setdefault("id", bound.auto_id)
            value = bound.value()
            direct = widget.render(bound.html_name, value, attrs=attrs)
            django = plain.render(widget, bound.html_name, value, attrs=attrs)
            assert str(direct) == str(django)
            assert str(bound) == str(direct)


def test_mention_candidates_and_seen_faces_draw_what_the_template_loops_drew(alice, bob, carol):
    """{% mention_candidates %} and {% seen_faces %} build their markup in Python: what the
    template loops gave, every name escaped (markup, quotes, ampersands, French and
    right-to-left names)."""
    from django.template import Context, Template
    from django.utils.html import escape

    bob.display_name = "<script>alert('x')</script> \"Bob\" & co"
    carol.display_name = "Éloïse \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627"
    alice.avatar_small.name = 'avatars/a"&b-64.webp'
    members = [alice, bob, carol]
    context = Context({"members": members})
    tags = Template("{% load room_members %}{% mention_candidates members %}|{% seen_faces members %}")
    loops = Template(
        "{% load avatars %}"
        '{% for member in members %}<li data-mention="{{ member.username }}" data-label="{{ member.name }}"'
        ' data-user-id="{{ member.pk }}"></li>{% endfor %}|'
        '{% for member in members %}<span class="seen__face" data-user-id="{{ member.pk }}"'
        ' data-name="{{ member.name }}">{% avatar member 18 %}</span>{% endfor %}'
    )
    drawn = tags.render(context)
    assert drawn == loops.render(context)
    assert (
        "<script>" not in drawn
        and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &quot;Bob&quot; &amp; co" in drawn
    )
    assert carol.display_name in drawn and f'src="{escape(alice.avatar_small.url)}"' in drawn
