from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("manifest.webmanifest", views.manifest, name="manifest"),
    path("sw.js", views.service_worker, name="service_worker"),
    path("offline/", views.offline, name="offline"),
    path("settings/notifications/devices/", views.subscribe, name="subscribe"),
    path("settings/notifications/devices/forget/", views.unsubscribe, name="unsubscribe_device"),
    path(
        "settings/notifications/devices/<id:subscription_id>/remove/",
        views.remove_device,
        name="remove_device",
    ),
    path("settings/notifications/choices/", views.choices, name="choices"),
    path("notifications/stop-email/<str:token>/", views.stop_missed_email, name="unsubscribe"),
]
