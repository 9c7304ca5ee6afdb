from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("u/<str:username>/", views.profile, name="profile"),
    path("settings/profile/", views.profile_settings, name="profile_settings"),
    path("settings/profile/avatar/remove/", views.remove_avatar, name="remove_avatar"),
    path("settings/time-zone/", views.set_time_zone, name="time_zone"),
    path("people/", views.people_search, name="people"),
    path("u/<str:username>/block/", views.block, name="block"),
    path("u/<str:username>/unblock/", views.unblock, name="unblock"),
    path("settings/blocked/", views.blocked_accounts, name="blocked"),
]
