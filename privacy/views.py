from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import ValidationError
from django.core.files import File
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from privacy import services
from privacy.export import export_path
from privacy.forms import DeleteAccountForm
from privacy.models import DataExport
from rooms import ratelimits
from rooms.views.messages import stream_file

# Wrong passwords on the delete form, per person, before it waits an hour.
DELETE_ATTEMPTS_PER_HOUR = 10


def _context(request, **extra):
    return {
        "exports": services.visible_exports(request.user),
        "delete_form": DeleteAccountForm(user=request.user),
        **extra,
    }


@require_GET
def account_settings(request):
    """Your data and your account: download everything, or delete it all."""
    return render(request, "privacy/account.html", _context(request))


@require_POST
def request_export(request):
    error = ""
    try:
        services.do_request_export(request.user)
    except ValidationError as exc:
        error = exc.messages[0]
    if request.htmx:
        # The section shows the progress (or why not) in place: no flash for a later page.
        return render(request, "privacy/account.html#exports", _context(request, export_error=error))
    if error:
        messages.error(request, error)
    else:
        messages.success(request, _("Your export is being prepared. It can take a few minutes."))
    return redirect("privacy:account")


@require_GET
def export_status(request):
    """The exports section, for htmx to poll while one is being built."""
    return render(request, "privacy/account.html#exports", _context(request))


@require_GET
def download_export(request, export_id: int):
    """The ZIP, to its owner only, while it is offered; anyone else's id is a 404."""
    export = DataExport.objects.filter(
        pk=export_id, user=request.user, status=DataExport.Status.READY
    ).first()
    if export is None or export.is_expired():
        raise Http404(_("No such export."))
    try:
        handle = export_path(export).open("rb")
    except (OSError, ValueError):
        raise Http404(_("No such export.")) from None
    filename = f"calpico-{request.user.username}-{export.created_at:%Y-%m-%d}.zip"
    # A chunk at a time (under daphne a FileResponse would be read into memory whole).
    response = stream_file(request, File(handle), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename) or ""
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
def delete_account(request):
    if request.method == "GET":
        return redirect("privacy:account")
    form = DeleteAccountForm(request.POST, user=request.user)
    try:
        ratelimits.hit(
            ratelimits.Limit(
                "delete-account", DELETE_ATTEMPTS_PER_HOUR, 3600, "trying to delete your account"
            ),
            request.user.pk,
        )
    except ratelimits.RateLimited as exc:
        form.is_valid()
        form.add_error(None, exc.messages[0])
        return render(request, "privacy/account.html", _context(request, delete_form=form), status=429)
    if not form.is_valid():
        return render(request, "privacy/account.html", _context(request, delete_form=form), status=422)
    services.do_delete_account(request.user, delete_messages=form.cleaned_data["delete_messages"])
    logout(request)
    messages.success(request, _("Your account is deleted. Goodbye, and thank you for chatting here."))
    return redirect("landing")
