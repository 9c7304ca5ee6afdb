from django.urls import path

from rooms import views

app_name = "rooms"

urlpatterns = [
    path("rooms/", views.index, name="index"),
    path("rooms/new/", views.new_group, name="new_group"),
    path("messages/new/", views.new_direct, name="new_direct"),
    path("dm/<str:username>/", views.open_direct, name="open_direct"),
    path("r/<int:room_id>/", views.room, name="room"),
    path("r/<int:room_id>/composer/", views.composer, name="composer"),
    path("r/<int:room_id>/messages/", views.post_message, name="post_message"),
    path("r/<int:room_id>/read/", views.mark_read, name="mark_read"),
    path("r/<int:room_id>/m/<int:message_id>/", views.message_detail, name="message"),
    path("r/<int:room_id>/m/<int:message_id>/edit/", views.edit_message, name="edit_message"),
    path("r/<int:room_id>/m/<int:message_id>/delete/", views.delete_message, name="delete_message"),
    path("r/<int:room_id>/m/<int:message_id>/image/", views.message_image, name="message_image"),
    path("r/<int:room_id>/settings/", views.room_settings, name="settings"),
    path("r/<int:room_id>/settings/rename/", views.rename_room, name="rename"),
    path("r/<int:room_id>/settings/add/", views.add_members, name="add_members"),
    path("r/<int:room_id>/settings/remove/", views.remove_member, name="remove_member"),
    path("r/<int:room_id>/settings/owner/", views.transfer_ownership, name="transfer_ownership"),
    path("r/<int:room_id>/leave/", views.leave_room, name="leave"),
    path("r/<int:room_id>/mute/", views.set_muted, name="mute"),
    path("rooms/sidebar/", views.sidebar, name="sidebar"),
    path("settings/notifications/", views.notification_settings, name="notifications"),
]
