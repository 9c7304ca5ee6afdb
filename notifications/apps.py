from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from notifications import jobs, services

        jobs.register()
        user_logged_out.connect(services.signed_out, dispatch_uid="notifications.signed_out")
