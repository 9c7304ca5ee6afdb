from django.urls import path

from rooms.views import groups as views

app_name = "rooms"

urlpatterns = [
    path("rooms/", views.index, name="index"),
    path("rooms/new/", views.new_group, name="new_group"),
    path("messages/new/", views.new_direct, name="new_direct"),
    path("dm/<str:username>/", views.open_direct, name="open_direct"),
    path("r/<id:room_id>/", views.room, name="room"),
    path("r/<id:room_id>/composer/", views.composer, name="composer"),
    path("r/<id:room_id>/messages/", views.post_message, name="post_message"),
    path("r/<id:room_id>/read/", views.mark_read, name="mark_read"),
    path("r/<id:room_id>/m/<id:message_id>/", views.message_detail, name="message"),
    path("r/<id:room_id>/m/<id:message_id>/edit/", views.edit_message, name="edit_message"),
    path("r/<id:room_id>/m/<id:message_id>/delete/", views.delete_message, name="delete_message"),
    path("r/<id:room_id>/m/<id:message_id>/image/", views.message_image, name="message_image"),
    path("r/<id:room_id>/settings/", views.room_settings, name="settings"),
    path("r/<id:room_id>/settings/rename/", views.rename_room, name="rename"),
    path("r/<id:room_id>/settings/add/", views.add_members, name="add_members"),
    path("r/<id:room_id>/settings/remove/", views.remove_member, name="remove_member"),
    path("r/<id:room_id>/settings/owner/", views.transfer_ownership, name="transfer_ownership"),
    path("r/<id:room_id>/settings/admin/", views.set_admin, name="set_admin"),
    path("r/<id:room_id>/settings/invite-policy/", views.set_members_can_invite, name="invite_policy"),
    path("r/<id:room_id>/invites/", views.create_invite, name="create_invite"),
    path("r/<id:room_id>/invites/<id:invite_id>/revoke/", views.revoke_invite, name="revoke_invite"),
    path("r/<id:room_id>/m/<id:message_id>/report/", views.report_message, name="report"),
    path("requests/", views.requests, name="requests"),
    path("r/<id:room_id>/request/accept/", views.accept_request, name="accept_request"),
    path("r/<id:room_id>/request/delete/", views.decline_request, name="decline_request"),
    path("r/<id:room_id>/request/block/", views.block_request, name="block_request"),
    path("join/<str:token>/", views.join, name="join"),
    path("join/<str:token>/confirm/", views.join_confirm, name="join_confirm"),
    path("r/<id:room_id>/leave/", views.leave_room, name="leave"),
    path("r/<id:room_id>/mute/", views.set_muted, name="mute"),
    path("rooms/sidebar/", views.sidebar, name="sidebar"),
    path("settings/notifications/", views.notification_settings, name="notifications"),
]
