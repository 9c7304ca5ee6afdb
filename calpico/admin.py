"""The admin site: every model admin on it, the project's and the libraries', reads ids the
way the rest of the project does (`rooms.access.parse_id`).

An id a 64-bit column cannot hold, or one that is not a whole number from 1 up, is bad
input like any other: in a changelist filter it is Django's "incorrect lookup parameters"
(a redirect to `?e=1`), among an action's selected objects it is an error message and the
action does nothing, and in an object's URL it is "no such object". Without this the
database driver meets the number first (an OverflowError on SQLite) and the answer is a 500.
"""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import FieldDoesNotExist
from django.db import DataError, models, router, transaction
from django.db.models.constants import LOOKUP_SEP

from rooms.access import parse_id

# The lookups a changelist filter compares an id with; the value of `in` is a list.
ID_LOOKUPS = {"exact", "in", "gt", "gte", "lt", "lte"}


def _is_id(field) -> bool:
    """A primary key or a relation whose column holds an integer id."""
    if field.is_relation:
        field = getattr(field, "target_field", None)
    return isinstance(field, models.IntegerField) and field.primary_key


def _compares_an_id(opts, key: str) -> bool:
    """Whether a changelist query parameter (`room`, `room__id__exact`, `pk__in`...)
    compares an id."""
    parts = key.split(LOOKUP_SEP)
    if len(parts) > 1 and parts[-1] in ID_LOOKUPS:
        parts.pop()
    field = None
    for part in parts:
        if opts is None:
            return False
        try:
            field = opts.pk if part == "pk" else opts.get_field(part)
        except FieldDoesNotExist:
            return False
        related = field.related_model if field.is_relation else None
        opts = related._meta if related is not None else None
    return field is not None and _is_id(field)


class IdCheckingAdmin:
    """Mixed into each ModelAdmin registered on the site (see `AdminSite.register`)."""

    model: type[models.Model]

    def get_changelist_instance(self, request):
        opts = self.model._meta
        for key, values in request.GET.lists():
            if _compares_an_id(opts, key):
                for value in values:
                    if any(parse_id(part) is None for part in value.split(",")):
                        raise IncorrectLookupParameters(f"{key}: {value!r} is not an id")
        # Any other number out of the database's range (a count, a seq): the query is
        # built and counted here, in a savepoint, so a failed one leaves the request's
        # transaction usable.
        try:
            with transaction.atomic(using=router.db_for_read(self.model)):
                return super().get_changelist_instance(request)  # type: ignore[misc]
        except (OverflowError, DataError) as exc:
            raise IncorrectLookupParameters(exc) from exc

    def response_action(self, request, queryset):
        if _is_id(self.model._meta.pk):
            for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
                if parse_id(value) is None:
                    self.message_user(  # type: ignore[attr-defined]
                        request, f"“{value}” is not an id: nothing was done.", messages.ERROR
                    )
                    return None
        return super().response_action(request, queryset)  # type: ignore[misc]

    def get_object(self, request, object_id, from_field=None):
        opts = self.model._meta
        field = opts.pk if from_field is None else opts.get_field(from_field)
        if _is_id(field) and parse_id(object_id) is None:
            return None
        return super().get_object(request, object_id, from_field)  # type: ignore[misc]


class AdminSite(admin.AdminSite):
    """The project's admin site (`calpico.apps.AdminConfig` makes it `admin.site`). Each
    model admin registered here checks the ids it reads, whoever registers it."""

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, IdCheckingAdmin):
            admin_class = type(
                admin_class.__name__,
                (IdCheckingAdmin, admin_class),
                {"__module__": admin_class.__module__, "__qualname__": admin_class.__qualname__},
            )
        super().register(model_or_iterable, admin_class, **options)

    def password_change(self, request, extra_context=None):
        """Django's "Change password" of the admin site (a staff member's own): as after a
        password set on a person's admin page, the account's other sessions are over, and
        with them their sockets and devices (`accounts.signals.password_set_by_admin`)."""
        from accounts.signals import password_set_by_admin

        response = super().password_change(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and request.user.is_authenticated:
            password_set_by_admin.send(sender=type(request.user), user=request.user, request=request)
        return response
