from django.urls import path

from rooms.views import direct, groups, invites, messages, reactions, reports, rooms, search

app_name = "rooms"

urlpatterns = [
    path("rooms/", rooms.index, name="index"),
    path("rooms/new/", groups.new_group, name="new_group"),
    path("messages/new/", direct.new_direct, name="new_direct"),
    path("dm/<str:username>/", direct.open_direct, name="open_direct"),
    path("r/<id:room_id>/", rooms.room, name="room"),
    path("r/<id:room_id>/composer/", rooms.composer, name="composer"),
    path("r/<id:room_id>/messages/", messages.post_message, name="post_message"),
    path("r/<id:room_id>/read/", messages.mark_read, name="mark_read"),
    # A message by its place in the room (Message.seq, what people link to); the message's
    # actions below take its id.
    path("r/<id:room_id>/m/<id:seq>/", messages.message_in_context, name="message"),
    path("r/<id:room_id>/m/<id:message_id>/edit/", messages.edit_message, name="edit_message"),
    path("r/<id:room_id>/m/<id:message_id>/delete/", messages.delete_message, name="delete_message"),
    path("r/<id:room_id>/m/<id:message_id>/image/", messages.message_image, name="message_image"),
    path("r/<id:room_id>/m/<id:message_id>/file/", messages.message_file, name="message_file"),
    path("r/<id:room_id>/m/<id:message_id>/react/", reactions.react, name="react"),
    path("r/<id:room_id>/settings/", groups.room_settings, name="settings"),
    path("r/<id:room_id>/settings/rename/", groups.rename_room, name="rename"),
    path("r/<id:room_id>/settings/add/", groups.add_members, name="add_members"),
    path("r/<id:room_id>/settings/remove/", groups.remove_member, name="remove_member"),
    path("r/<id:room_id>/settings/owner/", groups.transfer_ownership, name="transfer_ownership"),
    path("r/<id:room_id>/settings/admin/", groups.set_admin, name="set_admin"),
    path("r/<id:room_id>/settings/invite-policy/", groups.set_members_can_invite, name="invite_policy"),
    path("r/<id:room_id>/invites/", invites.create_invite, name="create_invite"),
    path("r/<id:room_id>/invites/<id:invite_id>/revoke/", invites.revoke_invite, name="revoke_invite"),
    path("r/<id:room_id>/m/<id:message_id>/report/", reports.report_message, name="report"),
    path("requests/", direct.requests, name="requests"),
    path("r/<id:room_id>/request/accept/", direct.accept_request, name="accept_request"),
    path("r/<id:room_id>/request/delete/", direct.decline_request, name="decline_request"),
    path("r/<id:room_id>/request/block/", direct.block_request, name="block_request"),
    path("join/<str:token>/", invites.join, name="join"),
    path("join/<str:token>/confirm/", invites.join_confirm, name="join_confirm"),
    path("r/<id:room_id>/leave/", groups.leave_room, name="leave"),
    path("r/<id:room_id>/mute/", groups.set_muted, name="mute"),
    path("rooms/sidebar/", rooms.sidebar, name="sidebar"),
    path("search/", search.search, name="search"),
    path("settings/notifications/", rooms.notification_settings, name="notifications"),
    path("settings/privacy/", rooms.privacy_settings, name="privacy"),
]
