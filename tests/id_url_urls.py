"""A URL configuration of tests/test_message_html.py's own: the rooms' and the assistant's
addresses under another path and a language prefix (i18n_patterns), for `{% id_url %}`."""

from django.conf.urls.i18n import i18n_patterns
from django.urls import include, path

import calpico.urls  # noqa: F401  (registers the `<id:...>` converter these patterns use)

urlpatterns = i18n_patterns(
    path("elsewhere/", include("rooms.urls")),
    path("elsewhere/", include("assistant.urls")),
)
