from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin, on the project's site: every model admin checks the ids it reads."""

    default_site = "calpico.admin.AdminSite"
