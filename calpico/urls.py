from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path, register_converter
from django.views.decorators.cache import cache_control
from django.views.i18n import JavaScriptCatalog

from calpico import views
from rooms.access import IdConverter

# `<id:room_id>`: an id a 64-bit column holds; any other value is a 404 (rooms.access).
register_converter(IdConverter, "id")

admin.site.site_header = "Calpico administration"
admin.site.site_title = "Calpico admin"

urlpatterns = [
    path("", views.landing, name="landing"),
    # The JavaScript strings in the active language, loaded by base.html before the modules.
    path(
        "jsi18n/",
        login_not_required(cache_control(max_age=3600)(JavaScriptCatalog.as_view())),
        name="javascript-catalog",
    ),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("rooms.urls")),
    path("", include("assistant.urls")),
    path("", include("privacy.urls")),
    path("", include("e2ee.urls")),
    path("", include("notifications.urls")),
]

if settings.SERVE_MEDIA:
    # Media is only for signed-in people (LoginRequiredMiddleware covers this view too).
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", views.media, name="media")]
