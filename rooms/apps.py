from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        # Connects the live layer's receivers of account changes (sign-in and out,
        # passwords, blocks, suspensions).
        from rooms import live  # noqa: F401
