from django.apps import AppConfig


class RoomsConfig(AppConfig):
    name = "rooms"

    def ready(self) -> None:
        # Connects the live-delivery receivers to rooms' signals.
        from rooms import live  # noqa: F401
