from django.apps import AppConfig


class AssistantConfig(AppConfig):
    name = "assistant"

    def ready(self) -> None:
        from assistant.services import add_run_to_snapshot, queue_for_message
        from assistant.summary import forget_removed_message
        from rooms import hooks

        hooks.on_message_stored(queue_for_message)
        hooks.on_report_snapshot(add_run_to_snapshot)
        hooks.on_message_removed(forget_removed_message)
