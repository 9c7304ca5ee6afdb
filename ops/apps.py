from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Running Calpico: health and readiness probes, metrics, backup and restore."""

    name = "ops"
