from typing import Any

from django import template
from django.conf import settings

from notifications import email, vapid

register = template.Library()


@register.inclusion_tag("notifications/_settings.html", takes_context=True)
def push_settings(context: template.Context) -> dict[str, Any]:
    """The notification settings' sections for this device, notification text and email."""
    request = context["request"]
    user = request.user
    return {
        "request": request,
        "user": user,
        "csrf_token": context.get("csrf_token"),
        "vapid_public_key": vapid.public_key(),
        "devices": list(user.push_subscriptions.order_by("-last_used_at")),
        "verified_email": email.verified_address(user),
        "missed_minutes": settings.EMAIL_MISSED_AFTER_MINUTES,
    }
