"""The delivery service of encrypted rooms: devices, key packages, and the order of MLS
handshake messages (docs/e2ee.md). Everything here is public key material or ciphertext;
the server checks shapes and access, never contents it cannot read."""

import base64
import binascii
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from rooms import ratelimits
from rooms.models import Membership, Room
from rooms.services.core import lock_room, system_message

from .models import Device, Group, Handshake, KeyPackage

# MLSMessage wire formats (RFC 9420, 6), after the version mls10 (0x0001).
PUBLIC_MESSAGE, PRIVATE_MESSAGE, WELCOME, KEY_PACKAGE = 1, 2, 3, 5
KEY_PACKAGE_MAX_CHARS = 4096
HANDSHAKE_MAX_CHARS = 256 * 1024
KEY_PACKAGES_PER_UPLOAD = 10
UNCLAIMED_PER_DEVICE = 50


def key_uploads() -> ratelimits.Limit:
    return ratelimits.Limit("e2ee-keys-hour", settings.RATE_E2EE_KEYS_PER_HOUR, 3600, "uploading keys")


def key_claims() -> ratelimits.Limit:
    return ratelimits.Limit("e2ee-claims-hour", settings.RATE_E2EE_CLAIMS_PER_HOUR, 3600, "adding devices")


def clean_mls(value: object, wire_formats: tuple[int, ...], max_chars: int, what: str) -> str:
    """Base64 of an MLSMessage of one of `wire_formats`, or ValidationError."""
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise ValidationError(_("%(what)s is missing or too long.") % {"what": what}, code="invalid")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(_("%(what)s is not valid base64.") % {"what": what}, code="invalid") from None
    if len(raw) < 8 or raw[:2] != b"\x00\x01" or int.from_bytes(raw[2:4], "big") not in wire_formats:
        raise ValidationError(
            _("%(what)s is not an MLS message of the right kind.") % {"what": what}, code="invalid"
        )
    return value


def clean_signature_key(value: object) -> str:
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValidationError(_("The signature key must be 32 bytes of base64 (Ed25519)."), code="invalid")
    return str(value)


def clean_key_packages(values: object) -> list[str]:
    if not isinstance(values, list) or not values or len(values) > KEY_PACKAGES_PER_UPLOAD:
        raise ValidationError(
            _("Send between 1 and %(count)s key packages.") % {"count": KEY_PACKAGES_PER_UPLOAD},
            code="invalid",
        )
    return [clean_mls(value, (KEY_PACKAGE,), KEY_PACKAGE_MAX_CHARS, _("A key package")) for value in values]


def encrypted_rooms(user: User) -> list[int]:
    return list(
        Membership.objects.filter(user=user, room__encrypted=True, room__archived_at__isnull=True)
        .exclude(request=Membership.Request.DECLINED)
        .values_list("room_id", flat=True)
    )


def do_register_device(user: User, *, signature_key: object, label: object, key_packages: object) -> Device:
    """A new browser of `user`, with its first key packages; each encrypted room of theirs
    is told, so the other members' browsers add it to the group (and people see it).

    A browser whose site data was cleared registers again as a new device, and the old one
    is never heard of again: past E2EE_MAX_DEVICES the oldest devices are retired (their
    unused key packages go with them, and members' browsers take them out of the groups)."""
    signature_key = clean_signature_key(signature_key)
    packages = clean_key_packages(key_packages)
    label = label.strip()[:80] if isinstance(label, str) else ""
    ratelimits.hit(key_uploads(), user.pk, amount=len(packages))
    with transaction.atomic():
        kept = max(0, settings.E2EE_MAX_DEVICES - 1)
        newest = Device.objects.filter(user=user).order_by("-created_at", "-pk").values_list("pk", flat=True)
        Device.objects.filter(pk__in=list(newest[kept:])).delete()
        device = Device.objects.create(user=user, signature_key=signature_key, label=label)
        KeyPackage.objects.bulk_create([KeyPackage(device=device, data=data) for data in packages])
    for room_id in encrypted_rooms(user):
        with transaction.atomic():
            system_message(lock_room(room_id), "e2ee_device_added", user=user.name)
    return device


def do_remove_device(device: Device) -> None:
    """The person takes one of their devices out (a lost or old browser): it is forgotten
    here, members' browsers take it out of the groups, and each room is told."""
    user = device.user
    device.delete()
    for room_id in encrypted_rooms(user):
        with transaction.atomic():
            system_message(lock_room(room_id), "e2ee_device_removed", user=user.name)


def do_add_key_packages(device: Device, key_packages: object) -> list[int]:
    packages = clean_key_packages(key_packages)
    unclaimed = KeyPackage.objects.filter(device=device, claimed_at__isnull=True).count()
    if unclaimed + len(packages) > UNCLAIMED_PER_DEVICE:
        raise ValidationError(
            _("This device has %(count)s unused key packages already.") % {"count": unclaimed},
            code="too_many_key_packages",
        )
    ratelimits.hit(key_uploads(), device.user_id, amount=len(packages))
    created = KeyPackage.objects.bulk_create([KeyPackage(device=device, data=data) for data in packages])
    return [package.pk for package in created]


def room_devices(room: Room) -> list[Device]:
    """The devices of the room's members (who the group should hold), oldest first."""
    members = Membership.objects.filter(room=room).exclude(request=Membership.Request.DECLINED)
    return list(
        Device.objects.filter(user__in=members.values("user_id"))
        .select_related("user")
        .order_by("created_at", "pk")
    )


def do_create_group(room: Room, device: Device) -> bool:
    """Record that `device` made the room's group; False if another device did first."""
    try:
        with transaction.atomic():
            Group.objects.create(room=room, created_by=device)
    except IntegrityError:
        return False
    return True


def do_claim_key_packages(room: Room, claimer: Device, device_ids: object) -> list[KeyPackage]:
    """One unused key package for each of these devices of the room's members (those
    without one are left out): each is handed out once."""
    if (
        not isinstance(device_ids, list)
        or len(device_ids) > settings.E2EE_MAX_DEVICES * settings.E2EE_MAX_MEMBERS
    ):
        raise ValidationError(_("Send the list of devices to add."), code="invalid")
    wanted = set()
    for value in device_ids:
        try:
            wanted.add(uuid.UUID(str(value)))
        except ValueError:
            raise ValidationError(
                _("“%(value)s” is not a device id.") % {"value": value}, code="invalid"
            ) from None
    allowed = {device.pk for device in room_devices(room)} & wanted
    ratelimits.hit(key_claims(), claimer.user_id, amount=max(1, len(allowed)))
    claimed = []
    with transaction.atomic():
        for device_id in sorted(allowed):
            package = (
                KeyPackage.objects.select_for_update()
                .filter(device_id=device_id, claimed_at__isnull=True)
                .order_by("pk")
                .first()
            )
            if package is not None:
                package.claimed_at = timezone.now()
                package.save(update_fields=["claimed_at"])
                claimed.append(package)
    return claimed


@dataclass(frozen=True)
class CommitResult:
    accepted: bool
    epoch: int


def do_commit(
    room: Room, sender: Device, *, epoch: object, commit: object, welcome: object, key_package_ids: object
) -> CommitResult:
    """Accept the commit if it was made in the group's current epoch (then the group moves
    on), else refuse it with the current epoch: the sender applies the commits it missed
    and tries again. A Welcome goes to the devices whose key packages it names."""
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValidationError(_("The epoch must be a whole number."), code="invalid")
    commit = clean_mls(commit, (PUBLIC_MESSAGE, PRIVATE_MESSAGE), HANDSHAKE_MAX_CHARS, _("The commit"))
    packages: list[KeyPackage] = []
    if welcome is not None:
        welcome = clean_mls(welcome, (WELCOME,), HANDSHAKE_MAX_CHARS, _("The Welcome"))
        if not isinstance(key_package_ids, list) or not all(
            isinstance(pk, int) and not isinstance(pk, bool) for pk in key_package_ids
        ):
            raise ValidationError(_("Name the key packages the Welcome is for."), code="invalid")
        member_devices = [device.pk for device in room_devices(room)]
        packages = list(
            KeyPackage.objects.filter(
                pk__in=key_package_ids, device_id__in=member_devices, claimed_at__isnull=False
            )
        )
        if len(packages) != len(set(key_package_ids)):
            raise ValidationError(
                _("The Welcome names key packages that were not handed out here."), code="invalid"
            )
    with transaction.atomic():
        group = Group.objects.select_for_update().filter(room=room).first()
        if group is None:
            raise ValidationError(_("This conversation's group is not made yet."), code="no_group")
        if group.epoch != epoch:
            return CommitResult(False, group.epoch)
        Handshake.objects.create(
            room=room, kind=Handshake.Kind.COMMIT, epoch=epoch, sender=sender, data=commit
        )
        for package in packages:
            Handshake.objects.create(
                room=room,
                kind=Handshake.Kind.WELCOME,
                epoch=epoch + 1,
                sender=sender,
                recipient_id=package.device_id,
                key_package_id=package.pk,
                data=welcome,
            )
        group.epoch = epoch + 1
        group.save(update_fields=["epoch"])
    return CommitResult(True, group.epoch)
