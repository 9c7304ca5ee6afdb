from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext


class PushSubscription(models.Model):
    """One browser on one device that asked for notifications while Calpico is closed: the
    push service's endpoint and the keys its payloads are encrypted to (RFC 8291)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    # Unique: a browser that subscribes again (or for another account) takes the row over.
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When Calpico was last opened on this device (the page confirms its subscription).
    last_used_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user} on {self.browser}"

    @property
    def browser(self) -> str:
        """ "Firefox on Linux", from the user agent the browser sent when subscribing."""
        agent = self.user_agent
        name = next(
            (
                label
                for token, label in (
                    ("Edg/", "Edge"),
                    ("OPR/", "Opera"),
                    ("Firefox/", "Firefox"),
                    ("Chrome/", "Chrome"),
                    ("Chromium/", "Chromium"),
                    ("Safari/", "Safari"),
                )
                if token in agent
            ),
            "",
        )
        system = next(
            (
                label
                for token, label in (
                    ("Android", "Android"),
                    ("iPhone", "iOS"),
                    ("iPad", "iPadOS"),
                    ("Windows", "Windows"),
                    ("Mac OS X", "macOS"),
                    ("CrOS", "ChromeOS"),
                    ("Linux", "Linux"),
                )
                if token in agent
            ),
            "",
        )
        if name and system:
            return gettext("%(browser)s on %(system)s") % {"browser": name, "system": system}
        return name or system or gettext("A browser")
