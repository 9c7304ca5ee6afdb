from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import services
from accounts.forms import AvatarForm, ProfileForm
from accounts.models import User

PEOPLE_SEARCH_LIMIT = 20


@require_GET
def profile(request, username: str):
    person = get_object_or_404(User, username__iexact=username, is_active=True)
    blocked = person.pk != request.user.pk and services.has_blocked(request.user.pk, person.pk)
    return render(request, "accounts/profile.html", {"person": person, "blocked": blocked})


def _next(request, data) -> str:
    """The page to go back to, from `next` in `data`, if it is a path on this site; else ""."""
    target = data.get("next", "")
    # Browsers read "/\evil.example" as "//evil.example": only Django's check knows them all.
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts=None, require_https=request.is_secure()
    ):
        return target
    return ""


def _back(request, person: User):
    target = _next(request, request.POST) or person.get_absolute_url()
    if request.htmx:
        # A message's Block button posts with htmx: the whole page follows, with the flash message.
        return HttpResponseClientRedirect(target)
    return redirect(target)


@require_http_methods(["GET", "POST"])
def block(request, username: str):
    """Block someone: they can't message me, add me, or notify me. They are not told.
    GET asks first: a message's Block button leads here when the browser runs no JavaScript."""
    person = get_object_or_404(User, username__iexact=username)
    if request.method == "GET":
        back = _next(request, request.GET)
        context = {
            "question": f"Block {person.name}?",
            "explanation": "They won't be able to message you or add you to groups, and won't be told.",
            "confirm": "Block",
            "danger": True,
            "next": back,
            "cancel_url": back or person.get_absolute_url(),
        }
        return render(request, "confirm.html", context)
    try:
        services.do_block(request.user, person)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, _("You blocked %(name)s. They won't be told.") % {"name": person.name})
    return _back(request, person)


@require_POST
def unblock(request, username: str):
    person = get_object_or_404(User, username__iexact=username)
    services.do_unblock(request.user, person)
    messages.success(request, _("You unblocked %(name)s.") % {"name": person.name})
    return _back(request, person)


@require_GET
def blocked_accounts(request):
    people = User.objects.filter(blocks_received__blocker=request.user).order_by("username")
    return render(request, "accounts/blocked.html", {"people": people})


@require_http_methods(["GET", "POST"])
def profile_settings(request):
    user = request.user
    profile_form = ProfileForm(instance=user)
    avatar_form = AvatarForm()
    status = 200
    if request.method == "POST":
        if "avatar" in request.FILES or request.POST.get("action") == "avatar":
            avatar_form = AvatarForm(request.POST, request.FILES)
            if avatar_form.is_valid():
                try:
                    services.do_set_avatar(user, avatar_form.cleaned_data["avatar"])
                except ValidationError as exc:
                    avatar_form.add_error("avatar", exc)
                else:
                    messages.success(request, _("Your profile picture is updated."))
                    return redirect("accounts:profile_settings")
        else:
            profile_form = ProfileForm(request.POST, instance=user)
            if profile_form.is_valid():
                services.do_update_profile(
                    user,
                    display_name=profile_form.cleaned_data["display_name"],
                    language=profile_form.cleaned_data["language"],
                )
                # The saved language shows on the next page, this one's message included.
                translation.activate(user.language or translation.get_language_from_request(request))
                messages.success(request, _("Your profile is saved."))
                return redirect("accounts:profile_settings")
        status = 422
    return render(
        request,
        "accounts/profile_settings.html",
        {"profile_form": profile_form, "avatar_form": avatar_form},
        status=status,
    )


@require_POST
def set_time_zone(request):
    """The page's browser tells its time zone (static/js/viewer.js), once it differs."""
    if not services.do_set_time_zone(request.user, request.POST.get("time_zone", "")[:64]):
        return HttpResponseBadRequest(_("That is not a time zone."))
    return HttpResponse(status=204)


@require_POST
def remove_avatar(request):
    services.do_remove_avatar(request.user)
    messages.success(request, _("Your profile picture is removed."))
    return redirect("accounts:profile_settings")


@require_GET
def people_search(request):
    """People to start a conversation with, by username or display name."""
    query = request.GET.get("q", "").strip().lstrip("@")[:50]
    people = []
    if query:
        people = list(
            User.objects.filter(is_active=True)
            .filter(Q(username__icontains=query) | Q(display_name__icontains=query))
            .exclude(pk=request.user.pk)
            .order_by("username")[:PEOPLE_SEARCH_LIMIT]
        )
    template = "accounts/people.html"
    if request.htmx:
        template += "#results"
    return render(request, template, {"query": query, "people": people})
