from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """What people own: downloading their data, deleting their account."""

    name = "privacy"

    def ready(self) -> None:
        from jobs import queue
        from privacy import services

        queue.register(services.EXPORT_JOB, services.run_export, on_failure=services.export_failed)
        queue.register(services.EXPIRE_JOB, services.expire_export)
