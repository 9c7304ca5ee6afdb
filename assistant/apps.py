from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"

    def ready(self) -> None:
        from assistant.services import queue_for_message
        from rooms import hooks

        hooks.on_message_stored(queue_for_message)

        from assistant.services import add_run_to_snapshot
        from rooms.moderation import report_snapshot

        report_snapshot.connect(add_run_to_snapshot, weak=False, dispatch_uid="assistant.report_snapshot")
