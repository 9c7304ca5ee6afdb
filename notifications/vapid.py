"""The server's VAPID key (RFC 8292): push services check that pushes to a subscription come
from the server the browser subscribed with. Generated once into var/ (like the secret
key) unless VAPID_PRIVATE_KEY gives one; the public half is what browsers subscribe with."""

from __future__ import annotations

import base64
import functools
import os
import time
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from py_vapid import Vapid02

# A token is good for 12 hours (RFC 8292 allows at most 24).
TOKEN_SECONDS = 12 * 3600


def _load() -> Vapid02:
    configured = settings.VAPID_PRIVATE_KEY.strip()
    if configured:
        if configured.startswith("-----BEGIN"):
            return Vapid02.from_pem(configured.encode())
        return Vapid02.from_string(configured)
    path = settings.VAPID_PRIVATE_KEY_FILE
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Written whole or not at all: two processes starting together keep one key.
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        # Created private (never readable by another account, even for a moment).
        partial.unlink(missing_ok=True)
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink(missing_ok=True)
    return Vapid02.from_pem(path.read_bytes())


@functools.cache
def key() -> Vapid02:
    return _load()


def public_key() -> str:
    """The application server key browsers subscribe with (base64url, uncompressed point)."""
    raw = key().public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A token is signed once per push service origin and used for an hour of its 12.
REUSE_SECONDS = 3600
_signed: dict[str, tuple[float, dict[str, str]]] = {}


def authorization(endpoint: str) -> dict[str, str]:
    """The Authorization header for a push to `endpoint`: a JWT for its origin."""
    parts = urlsplit(endpoint)
    audience = f"{parts.scheme}://{parts.netloc}"
    now = time.time()
    cached = _signed.get(audience)
    if cached is not None and now - cached[0] < REUSE_SECONDS:
        return cached[1]
    claims = {"aud": audience, "exp": int(now) + TOKEN_SECONDS, "sub": settings.VAPID_SUBJECT}
    header = key().sign(claims)
    _signed[audience] = (now, header)
    return header
