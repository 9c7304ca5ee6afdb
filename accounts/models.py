import hashlib
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils.translation import gettext_lazy

from accounts.validators import USERNAME_VALIDATORS

AVATAR_COLOURS = 12


class CalpicoUserManager(UserManager):
    def get_by_natural_key(self, username):
        return self.get(username__iexact=username)


class User(AbstractUser):
    username = models.CharField(
        max_length=30,
        unique=True,
        validators=USERNAME_VALIDATORS,
        help_text=gettext_lazy("3 to 30 characters: letters, digits, underscores and dots."),
        error_messages={"unique": gettext_lazy("That username is taken.")},
    )
    display_name = models.CharField(max_length=50, blank=True)
    avatar_large = models.ImageField(upload_to="avatars/", blank=True)
    avatar_small = models.ImageField(upload_to="avatars/", blank=True)
    # Desktop notifications when the tab is hidden; the browser's permission is asked only
    # when the person switches this on.
    desktop_notifications = models.BooleanField(default=False)
    # Notifications when Calpico is closed (notifications/): off, a push says only who wrote
    # where ("New message from Alice in Trip planning"), never what.
    push_show_text = models.BooleanField(default=True)
    # An email listing direct messages and mentions left unread (needs a verified address);
    # `missed_email_at`: when the last one went, so there is at most one an hour and none
    # lists a message twice.
    email_missed = models.BooleanField(default=False)
    missed_email_at = models.DateTimeField(null=True, blank=True)
    # Others see how far I have read ("Seen"); off, they don't, and I don't see theirs.
    read_receipts = models.BooleanField(default=True)
    # The interface language; '' follows the browser (calpico.middleware.UserLanguageMiddleware).
    language = models.CharField(max_length=10, blank=True, default="", choices=settings.LANGUAGES)
    # The browser's time zone (an IANA name), remembered by static/js/viewer.js: dates the
    # server writes into pages are in it. '' until a page has told it (then UTC).
    time_zone = models.CharField(max_length=64, blank=True, default="")

    objects: ClassVar[CalpicoUserManager] = CalpicoUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="accounts_user_username_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    @property
    def name(self) -> str:
        """What other people see: the display name, or the username without one."""
        return self.display_name or self.username

    @property
    def initials(self) -> str:
        words = self.name.replace(".", " ").replace("_", " ").split()
        letters = "".join(word[0] for word in words[:2]) or self.username[:1]
        return letters.upper()

    @property
    def avatar_colour(self) -> int:
        """A stable colour index for the generated avatar, derived from the username."""
        digest = hashlib.sha256(self.username.lower().encode()).digest()
        return digest[0] % AVATAR_COLOURS

    def get_absolute_url(self) -> str:
        return reverse("accounts:profile", args=[self.username])


class Block(models.Model):
    """`blocker` no longer hears from `blocked`. The blocked person is never told."""

    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_received")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="accounts_block_unique"),
            models.CheckConstraint(
                condition=~models.Q(blocker=models.F("blocked")), name="accounts_block_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.blocker} blocks {self.blocked}"


class RetiredUsername(models.Model):
    """The username of a deleted account, kept from new sign-ups for a while so nobody
    takes it over while others still know it (privacy.services.do_delete_account)."""

    username = models.CharField(max_length=30, unique=True)  # lower case
    available_after = models.DateTimeField()

    def __str__(self) -> str:
        return f"@{self.username} (until {self.available_after:%Y-%m-%d})"
