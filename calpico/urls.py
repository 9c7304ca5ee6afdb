from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from calpico import views

admin.site.site_header = "Calpico administration"
admin.site.site_title = "Calpico admin"

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("", include("rooms.urls")),
    path("", include("assistant.urls")),
]

if settings.SERVE_MEDIA:
    # Media is only for signed-in people (LoginRequiredMiddleware covers this view too).
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", views.media, name="media")]
