import posixpath

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from django.views.static import serve


@require_GET
@login_not_required
def landing(request):
    if request.user.is_authenticated:
        return redirect("rooms:index")
    return render(request, "landing.html")


@require_GET
def media(request, path: str):
    """Profile pictures, for signed-in people only, when no proxy serves MEDIA_ROOT.

    Message images are not served here: rooms.views.messages.message_image checks membership.
    Only a path exactly as stored under avatars/ is served: any other spelling ("//",
    "..", "./", a backslash) could lead from here to attachments/.
    """
    if not path.startswith("avatars/") or posixpath.normpath(path) != path or "\\" in path or "\0" in path:
        raise Http404(_("Not here."))
    response = serve(request, path, document_root=str(settings.MEDIA_ROOT))
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
