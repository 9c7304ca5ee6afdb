from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from allauth.account.signals import password_changed, password_reset, password_set
        from django.contrib.auth.signals import user_logged_out

        from accounts.signals import password_set_by_admin
        from notifications import jobs, services

        jobs.register()
        user_logged_out.connect(services.signed_out, dispatch_uid="notifications.signed_out")
        for signal in (password_changed, password_set, password_set_by_admin):
            signal.connect(services.password_changed, dispatch_uid="notifications.password_changed")
        password_reset.connect(services.password_reset, dispatch_uid="notifications.password_reset")
