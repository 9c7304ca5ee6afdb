"""What the server keeps for end-to-end encrypted rooms (docs/e2ee.md): public key material
and the MLS handshake messages it orders. It never holds a private key or a plaintext.

The server is MLS's delivery service: it hands out each device's key packages once, and
accepts one commit per epoch of a room's group, first come first served, so every member
applies the same commits in the same order.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from rooms.models import Room


class Device(models.Model):
    """One browser of one person: its keys live in that browser's IndexedDB only."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="e2ee_devices")
    # What the person sees in the list ("Chrome on Linux"), from the browser; not trusted.
    label = models.CharField(max_length=80, blank=True)
    # The Ed25519 public key the device signs its MLS messages with, base64.
    signature_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.user} · {self.label or self.pk}"


class KeyPackage(models.Model):
    """An MLS key package (RFC 9420, 10): what lets someone add the device to a group.
    Each is handed out once (`claimed_at`)."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="key_packages")
    data = models.TextField()  # base64 of the MLSMessage
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["device", "claimed_at"])]

    def __str__(self) -> str:
        return f"Key package {self.pk} of {self.device_id}"


class Group(models.Model):
    """The MLS group of an encrypted room, as the server orders it."""

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="e2ee_group")
    # The group's current epoch: the next commit must be made in it.
    epoch = models.PositiveBigIntegerField(default=0)
    created_by = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Group of room {self.room_id}, epoch {self.epoch}"


class Handshake(models.Model):
    """A commit (for every member) or a Welcome (for the devices it adds), in epoch order."""

    class Kind(models.TextChoices):
        COMMIT = "commit", "Commit"
        WELCOME = "welcome", "Welcome"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="e2ee_handshakes")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # A commit: the epoch it was made in (the group moves to epoch + 1). A Welcome: the
    # epoch it lets the device join in.
    epoch = models.PositiveBigIntegerField()
    sender = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="+")
    # A Welcome: the device it is for, and the key package it was made for.
    recipient = models.ForeignKey(Device, null=True, on_delete=models.CASCADE, related_name="welcomes")
    key_package_id = models.BigIntegerField(null=True)
    data = models.TextField()  # base64 of the MLSMessage
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "epoch"], condition=Q(kind="commit"), name="e2ee_one_commit_per_epoch"
            ),
        ]
        indexes = [models.Index(fields=["room", "kind", "epoch"])]

    def __str__(self) -> str:
        return f"{self.kind} in room {self.room_id}, epoch {self.epoch}"
