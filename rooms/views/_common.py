"""What the room views share: the room page's context, the settings page, an htmx-aware
redirect. Rules (who may see or do what) are in rooms/access.py, not here."""

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from rooms import fragments, presence, services
from rooms.access import (
    access_message,
    can_administer,
    can_invite,
    can_remove_member,
    is_owner,
    shows_presence,
    visible_invites,
)
from rooms.forms import AddMembersForm, InviteForm, MessageForm, RenameForm
from rooms.grouping import laid_out_html
from rooms.models import Membership, Message
from rooms.queries import (
    HistoryPage,
    attach_reactions,
    history_page,
    room_members,
    room_title,
    sidebar_entries,
    visible_read_positions,
)
from rooms.services import invites


class MemberRequest(HttpRequest):
    """A request as the room views see it: from a signed-in person (LoginRequiredMiddleware
    lets nobody else reach them), through django-htmx's middleware. For type checking."""

    user: User
    htmx: HtmxDetails


def htmx_redirect(request: MemberRequest, url: str) -> HttpResponse:
    """A redirect that htmx follows as a whole page, not into the element that asked."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


def online_members(members: list[User]) -> set[int]:
    """Who of the room's members shows as online (see `access.shows_presence`)."""
    # room_members() gives each person their membership of the room.
    shown = [m.pk for m in members if shows_presence(m.room_membership)]  # type: ignore[attr-defined]
    return presence.online_user_ids(shown)


def reply_target(membership: Membership, value) -> Message | None:
    """The message the composer replies to, or None for an id that names nothing to reply to."""
    if not value:
        return None
    try:
        message = access_message(membership, value)
    except Http404:
        return None
    return None if message.is_system or message.is_deleted else message


def composer_form(request: MemberRequest, membership: Membership) -> tuple[MessageForm, Message | None]:
    """An empty composer, filled from the query string (a reply target, a draft)."""
    form = MessageForm()
    reply_to = reply_target(membership, request.GET.get("reply_to"))
    if reply_to:
        form.initial["reply_to"] = reply_to.pk
    if membership.room.encrypted:
        # The draft stays in the page (static/js/e2ee.js): never taken from a URL.
        return form.keep_text_in_page(), reply_to
    form.initial["body"] = request.GET.get("body", "")[: settings.MESSAGE_MAX_LENGTH]
    return form, reply_to


def room_context(
    request: MemberRequest,
    membership: Membership,
    *,
    page: HistoryPage | None = None,
    target: Message | None = None,
    form=None,
) -> dict:
    """The room page's context: `page` of history (by default the newest; read without its
    reactions, which are attached here), `target` the message a link opened it on (shown
    highlighted), `form` a composer that failed to post."""
    room = membership.room
    sidebar = sidebar_entries(request.user)
    # Reactions of people I blocked are left out (a pushed chip leaves them out in the page).
    if page is None:
        page = history_page(room, hidden=sidebar.blocked)
    else:
        attach_reactions(page.messages, hidden=sidebar.blocked)
    if form is None:
        form, reply_to = composer_form(request, membership)
    else:
        reply_to = reply_target(membership, form.data.get("reply_to"))
    members = room_members(room)
    return {
        "online": online_members(members),
        "room": room,
        "membership": membership,
        "title": room_title(room, request.user, members),
        "members": members,
        "page": page,
        "page_html": laid_out_html(page, fragments.messages_html(page.messages, request.user)),
        "target": target,
        "form": form,
        "reply_to": reply_to,
        "viewer": request.user,
        "is_admin": can_administer(request.user, room, membership),
        "blocked_ids": sorted(sidebar.blocked),
        "group_seconds": settings.MESSAGE_GROUP_SECONDS,
        "read_positions": visible_read_positions(request.user, members, sidebar.blocked | sidebar.blocked_by),
        "refusal": services.send_refusal(room, request.user),
        "is_request": membership.request == Membership.Request.PENDING,
        "sidebar": sidebar,
    }


def settings_page(
    request: MemberRequest,
    membership: Membership,
    *,
    status: int = 200,
    rename_form=None,
    add_form=None,
    invite_form=None,
    budget_form=None,
) -> HttpResponse:
    """The room's settings page, with any form that failed shown with its errors."""
    room = membership.room
    members = room_members(room)
    is_admin = can_administer(request.user, room, membership)
    for member in members:
        # room_members() gives each person their membership of the room.
        member.removable = is_admin and can_remove_member(  # type: ignore[attr-defined]
            request.user,
            room,
            member.room_membership,  # type: ignore[attr-defined]
            membership,
        )
    context = {
        "online": online_members(members),
        "room": room,
        "membership": membership,
        "title": room_title(room, request.user, members),
        "members": members,
        "is_admin": is_admin,
        "is_owner": is_owner(request.user, room),
        "can_invite": can_invite(request.user, room, membership),
        "invites": visible_invites(request.user, membership, invites.active_invites(room))
        if room.is_group
        else [],
        "invite_form": invite_form or InviteForm(),
        "rename_form": rename_form or RenameForm(initial={"title": room.title}),
        "add_form": add_form or AddMembersForm(),
        "budget_form": budget_form,  # the AI budget's, when it failed (assistant.views.set_budget)
        "max_members": settings.ROOM_MAX_MEMBERS,
        "sidebar": sidebar_entries(request.user),
    }
    return render(request, "rooms/room_settings.html", context, status=status)
