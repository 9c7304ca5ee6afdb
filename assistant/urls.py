from django.urls import path

from assistant import views

app_name = "assistant"

urlpatterns = [
    path("assistant/", views.my_assistant, name="mine"),
    path("assistant/memories/", views.memories, name="memories"),
    path("assistant/memories/<int:memory_id>/edit/", views.edit_memory, name="edit_memory"),
    path("assistant/memories/<int:memory_id>/delete/", views.delete_memory, name="delete_memory"),
    path("r/<int:room_id>/assistant/", views.assistant_settings, name="settings"),
    path("r/<int:room_id>/m/<int:message_id>/stop/", views.stop, name="stop"),
    path("r/<int:room_id>/m/<int:message_id>/retry/", views.retry, name="retry"),
    path("r/<int:room_id>/m/<int:message_id>/share/", views.share, name="share"),
]
