from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    """What people own: downloading their data, deleting their account."""

    name = "privacy"
