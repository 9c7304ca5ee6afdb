from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"

    def ready(self) -> None:
        from assistant.services import queue_for_message
        from rooms.signals import message_created

        def on_message_created(sender, message, membership, **kwargs) -> None:
            queue_for_message(message, membership)

        message_created.connect(on_message_created, weak=False, dispatch_uid="assistant.queue_for_message")

        from assistant.services import add_run_to_snapshot
        from rooms.moderation import report_snapshot

        report_snapshot.connect(add_run_to_snapshot, weak=False, dispatch_uid="assistant.report_snapshot")
