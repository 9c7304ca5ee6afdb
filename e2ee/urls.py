from django.urls import path

from . import views

app_name = "e2ee"

urlpatterns = [
    path("e2ee/devices/", views.register_device, name="register_device"),
    path("e2ee/devices/<str:device_id>/key-packages/", views.add_key_packages, name="key_packages"),
    path("e2ee/devices/<str:device_id>/remove/", views.remove_device, name="remove_device"),
    path("e2ee/r/<id:room_id>/state/", views.room_state, name="state"),
    path("e2ee/r/<id:room_id>/messages/", views.room_messages, name="messages"),
    path("e2ee/r/<id:room_id>/group/", views.create_group, name="group"),
    path("e2ee/r/<id:room_id>/claim/", views.claim_key_packages, name="claim"),
    path("e2ee/r/<id:room_id>/commit/", views.commit, name="commit"),
    path("e2ee/start/<str:username>/", views.start, name="start"),
]
