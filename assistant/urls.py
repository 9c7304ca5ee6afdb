from django.urls import path

from assistant import views

app_name = "assistant"

urlpatterns = [
    path("assistant/", views.my_assistant, name="mine"),
    path("assistant/memories/", views.memories, name="memories"),
    path("assistant/memories/<id:memory_id>/edit/", views.edit_memory, name="edit_memory"),
    path("assistant/memories/<id:memory_id>/delete/", views.delete_memory, name="delete_memory"),
    path("r/<id:room_id>/assistant/", views.assistant_settings, name="settings"),
    path("r/<id:room_id>/assistant/quiet/", views.quiet, name="quiet"),
    path("r/<id:room_id>/assistant/summary/clear/", views.clear_summary, name="clear_summary"),
    path("r/<id:room_id>/m/<id:message_id>/stop/", views.stop, name="stop"),
    path("r/<id:room_id>/m/<id:message_id>/retry/", views.retry, name="retry"),
    path("r/<id:room_id>/m/<id:message_id>/share/", views.share, name="share"),
    path("r/<id:room_id>/assistant/catch-up/", views.catch_up, name="catch_up"),
    path("r/<id:room_id>/assistant/ask/", views.ask_privately, name="ask_privately"),
    path("r/<id:room_id>/assistant/a/<id:answer_id>/discard/", views.discard_private, name="discard_private"),
    path("r/<id:room_id>/assistant/a/<id:answer_id>/share/", views.share_private, name="share_private"),
    path("r/<id:room_id>/m/<id:message_id>/continue/", views.continue_privately, name="continue_privately"),
    path("r/<id:room_id>/assistant/budget/", views.set_budget, name="set_budget"),
]
