from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from assistant import asking, budget, private, services, summary
from assistant.forms import AssistantForm, BudgetForm, MemoryForm, ShareForm
from assistant.models import AssistantRun, Memory
from assistant.prompt import MEMORIES_MAX
from rooms.access import access_membership, access_message, is_owner, parse_seq
from rooms.models import Message, Room
from rooms.queries import Sidebar, room_title, sidebar_entries
from rooms.views._common import settings_page


def _back(request, url: str):
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(url)


def _confirm(request, run: AssistantRun, question: str, explanation: str, confirm: str, back: str):
    context = {
        "question": question,
        "explanation": explanation,
        "confirm": confirm,
        "message": run.trigger,  # what the reply answers
        "cancel_url": back,
    }
    return render(request, "confirm.html", context)


@require_http_methods(["GET", "POST"])
def assistant_settings(request, room_id: int):
    """The room's Assistant panel on a page of its own (and where its form posts)."""
    membership = access_membership(request.user, room_id)
    room = membership.room
    owner_controls = is_owner(request.user, room)
    search_controls = services.can_control_search(request.user, room)
    form = None
    status = 200
    if request.method == "POST" and room.encrypted:
        status = 403  # the panel says why: the assistant is kept out of encrypted rooms
    elif request.method == "POST":
        form = AssistantForm(request.POST, owner_controls=owner_controls, search_controls=search_controls)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.do_update_assistant(
                    request.user,
                    room,
                    name=data["name"],
                    personality=data["personality"],
                    reply_mode=data["reply_mode"],
                    members_can_edit=data.get("members_can_edit") if owner_controls else None,
                    web_search=data.get("web_search") if search_controls else None,
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, _("The assistant is updated."))
                return redirect("rooms:settings", room.pk)
        status = 422
    context = {
        "room": room,
        "form": form,
        "title": room_title(room, request.user),
        "sidebar": sidebar_entries(request.user),
    }
    return render(request, "assistant/settings.html", context, status=status)


@require_http_methods(["GET", "POST"])
def stop(request, room_id: int, message_id: int):
    """Any member stops a reply in progress. GET asks first: the reply's Stop button leads
    here when the browser runs no JavaScript."""
    membership = access_membership(request.user, room_id)
    run = services.access_run_for_reply(membership, message_id)
    back = f"{membership.room.get_absolute_url()}#m-{message_id}"
    if request.method == "GET":
        stoppable = run.status in (AssistantRun.Status.QUEUED, AssistantRun.Status.RUNNING)
        if not stoppable or run.cancel_requested:
            return redirect(back)  # finished meanwhile: nothing to stop
        return _confirm(request, run, "Stop this reply?", "The text so far stays.", "Stop", back)
    services.do_stop_run(request.user, run)
    return _back(request, back)


@require_http_methods(["GET", "POST"])
def retry(request, room_id: int, message_id: int):
    """Any member asks again for a reply that failed. GET asks first: the reply's Retry
    button leads here when the browser runs no JavaScript."""
    membership = access_membership(request.user, room_id)
    run = services.access_run_for_reply(membership, message_id)
    if request.method == "GET":
        back = f"{membership.room.get_absolute_url()}#m-{message_id}"
        if run.status != AssistantRun.Status.FAILED:
            return redirect(back)  # answered or retried meanwhile
        explanation = "The assistant tries again, in the same message."
        return _confirm(request, run, "Retry this reply?", explanation, "Retry", back)
    try:
        services.do_retry_run(request.user, run)
    except ValidationError as exc:
        if request.htmx:
            return render(request, "assistant/_retry_refused.html", {"error": exc.messages[0]}, status=422)
        messages.error(request, exc.messages[0])
    return _back(request, f"{membership.room.get_absolute_url()}#m-{message_id}")


@require_http_methods(["GET", "POST"])
def quiet(request, room_id: int):
    """Any member: the assistant answers only mentions for the next hour. GET asks first
    (the button leads here when the browser runs no JavaScript)."""
    membership = access_membership(request.user, room_id)
    room = membership.room
    back = room.get_absolute_url()
    if request.method == "GET":
        context = {
            "question": _("Keep the assistant quiet for an hour?"),
            "explanation": _(
                "For the next hour it answers only when someone mentions it. The room is told who asked."
            ),
            "confirm": _("Quiet for an hour"),
            "cancel_url": back,
        }
        return render(request, "confirm.html", context)
    if services.do_quiet_for_an_hour(request.user, room) and not request.htmx:
        messages.success(request, _("The assistant stays quiet for an hour."))
    return _back(request, back)


@require_http_methods(["GET", "POST"])
def clear_summary(request, room_id: int):
    """Any member: the assistant forgets its summary of the room. GET asks first."""
    membership = access_membership(request.user, room_id)
    room = membership.room
    back = reverse("rooms:settings", args=[room.pk]) + "#assistant-memory"
    if request.method == "GET":
        context = {
            "question": _("Clear what the assistant remembers about this room?"),
            "explanation": _(
                "It forgets its summary of the older conversation, and does not read those "
                "messages again. The room is told who cleared it."
            ),
            "confirm": _("Clear"),
            "danger": True,
            "cancel_url": back,
        }
        return render(request, "confirm.html", context)
    summary.do_clear_summary(request.user, room)
    messages.success(request, _("The assistant’s summary of this room is cleared."))
    return redirect(back)


@require_GET
def my_assistant(request):
    """The user's private assistant room, made on first visit."""
    return redirect(private.do_open_private_room(request.user).get_absolute_url())


def _memories_page(request, form=None, editing=None, edit_form=None, status=200):
    context = {
        "memories": Memory.objects.filter(user=request.user),
        "memories_used": MEMORIES_MAX,
        "form": form or MemoryForm(),
        "editing": editing,
        "edit_form": edit_form,
        "private_room": Room.objects.filter(direct_key=private.private_room_key(request.user)).first(),
        "sidebar": sidebar_entries(request.user),
    }
    return render(request, "assistant/memories.html", context, status=status)


@require_http_methods(["GET", "POST"])
def memories(request):
    """The user's memories: used by their private assistant only."""
    if request.method == "POST":
        form = MemoryForm(request.POST)
        if form.is_valid():
            try:
                private.do_add_memory(request.user, form.cleaned_data["text"])
            except ValidationError as exc:
                form.add_error("text", exc)
            else:
                messages.success(request, _("Memory saved."))
                return redirect("assistant:memories")
        return _memories_page(request, form=form, status=422)
    return _memories_page(request)


def _own_memory(request, memory_id: int) -> Memory:
    memory = Memory.objects.filter(pk=memory_id, user=request.user).first()
    if memory is None:
        raise Http404(_("No such memory."))
    return memory


@require_http_methods(["GET", "POST"])
def edit_memory(request, memory_id: int):
    memory = _own_memory(request, memory_id)
    if request.method == "POST":
        form = MemoryForm(request.POST)
        if form.is_valid():
            try:
                private.do_edit_memory(memory, form.cleaned_data["text"])
            except ValidationError as exc:
                form.add_error("text", exc)
            else:
                messages.success(request, _("Memory updated."))
                return redirect("assistant:memories")
        return _memories_page(request, editing=memory, edit_form=form, status=422)
    return _memories_page(request, editing=memory, edit_form=MemoryForm(initial={"text": memory.text}))


@require_POST
def delete_memory(request, memory_id: int):
    private.do_delete_memory(_own_memory(request, memory_id))
    messages.success(request, _("Memory deleted."))
    return redirect("assistant:memories")


def _share_targets(sidebar: Sidebar) -> list[tuple[Room, str]]:
    """Conversations an answer may go to, with their titles: the user's accepted, live,
    shared rooms, which the sidebar has loaded already. Not an encrypted room: the answer is
    plain text the server holds, and those rooms take ciphertext only (docs/e2ee.md)."""
    return [
        (entry.room, entry.title)
        for entry in sidebar
        if not entry.room.is_private and not entry.room.encrypted
    ][:100]


@require_http_methods(["GET", "POST"])
def share(request, room_id: int, message_id: int):
    """Post a question and answer from the private room into another room, as a card."""
    membership = access_membership(request.user, room_id)
    if not membership.room.is_private:
        raise Http404(_("Only answers from your private assistant can be shared."))
    answer = access_message(membership, message_id)
    if not answer.is_assistant or answer.is_deleted or answer.state != Message.State.DONE or not answer.body:
        raise Http404(_("Only finished answers can be shared."))
    sidebar = sidebar_entries(request.user)
    targets = _share_targets(sidebar)
    form = ShareForm(request.POST or None, targets=targets)
    status = 200
    if request.method == "POST" and form.is_valid():
        target = access_membership(request.user, form.cleaned_data["room"])
        try:
            result = private.do_share_answer(target, answer, note=form.cleaned_data["note"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Shared."))
            return redirect(f"{target.room.get_absolute_url()}#m-{result.message.pk}")
    if request.method == "POST":
        status = 422
    context = {
        "room": membership.room,
        "answer": answer,
        "question": private.question_for(answer),
        "targets": targets,
        "form": form,
        "sidebar": sidebar,
    }
    return render(request, "assistant/share.html", context, status=status)


# Private answers inside a shared room (assistant/asking.py)


def _private_refused(request, membership, exc: ValidationError):
    if request.htmx:
        return render(request, "assistant/_private_error.html", {"error": exc.messages[0]}, status=422)
    messages.error(request, exc.messages[0])
    return redirect(membership.room.get_absolute_url())


def _private_done(request, membership, answer):
    if request.htmx:
        return render(request, "assistant/_private_answer.html", {"answer": answer})
    return redirect(f"{membership.room.get_absolute_url()}#pa-{answer.pk}")


@require_POST
def catch_up(request, room_id: int):
    """Catch me up: a summary of what I have not read, for me alone."""
    membership = access_membership(request.user, room_id)
    since = parse_seq(request.POST.get("since"))
    if since is None:
        since = membership.last_read_seq
    try:
        answer = asking.do_catch_up(membership, since)
    except ValidationError as exc:
        return _private_refused(request, membership, exc)
    return _private_done(request, membership, answer)


@require_POST
def ask_privately(request, room_id: int):
    """A question to the assistant about this room, answered to me alone."""
    membership = access_membership(request.user, room_id)
    try:
        answer = asking.do_ask_privately(membership, request.POST.get("question", ""))
    except ValidationError as exc:
        return _private_refused(request, membership, exc)
    return _private_done(request, membership, answer)


def _own_answer(request, membership, answer_id: int):
    answer = asking.own_answer(request.user, membership.room_id, answer_id)
    if answer is None:
        raise Http404(_("No such answer."))
    return answer


@require_POST
def discard_private(request, room_id: int, answer_id: int):
    membership = access_membership(request.user, room_id)
    asking.do_discard(_own_answer(request, membership, answer_id))
    if request.htmx:
        return HttpResponse("")
    return redirect(membership.room.get_absolute_url())


@require_POST
def share_private(request, room_id: int, answer_id: int):
    """Share to room: the question and the answer, posted as my message quoting both."""
    membership = access_membership(request.user, room_id)
    answer = _own_answer(request, membership, answer_id)
    try:
        result = asking.do_share_private(membership, answer)
    except ValidationError as exc:
        return _private_refused(request, membership, exc)
    if request.htmx:
        return HttpResponse("")  # the card goes; the message arrives like any other
    return redirect(f"{membership.room.get_absolute_url()}#m-{result.message.pk}")


@require_http_methods(["GET", "POST"])
def continue_privately(request, room_id: int, message_id: int):
    """Continue in My assistant: the message and a few before it, as context there."""
    membership = access_membership(request.user, room_id)
    message = access_message(membership, message_id)
    back = f"{membership.room.get_absolute_url()}#m-{message.pk}"
    room = membership.room
    readable = message.kind in (Message.Kind.TEXT, Message.Kind.ASSISTANT)
    if room.is_private or room.encrypted or message.is_deleted or not readable:
        raise Http404(_("No such message."))
    if request.method == "GET":
        context = {
            "question": _("Continue in My assistant?"),
            "explanation": _(
                "This message and the few before it go to your private assistant, with a link "
                "back. Nothing goes back to this conversation."
            ),
            "confirm": _("Continue"),
            "message": message,
            "cancel_url": back,
        }
        return render(request, "confirm.html", context)
    try:
        result = asking.do_continue_privately(membership, message)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect(back)
    return redirect(f"{result.message.room.get_absolute_url()}#m-{result.message.pk}")


@require_POST
def set_budget(request, room_id: int):
    """The room's monthly AI budget (owner and admins). Bad input: the settings page again,
    422, with the form showing what is wrong."""
    membership = access_membership(request.user, room_id)
    form = BudgetForm(request.POST)
    if form.is_valid():
        try:
            budget.do_set_budget(
                request.user,
                membership.room,
                unit=form.cleaned_data["unit"],
                limit=form.cleaned_data["limit"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("The AI budget is saved."))
            return redirect(f"{reverse('rooms:settings', args=[membership.room.pk])}#ai-budget")
    return settings_page(request, membership, status=422, budget_form=form)
