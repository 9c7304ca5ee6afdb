"""A fake Web Push service (RFC 8030) for tests and benchmarks, standard library plus the
`cryptography` and `http_ece` packages: an HTTP server on 127.0.0.1 in a daemon thread that
plays both ends a real push service joins, the push service and the browser.

`subscription()` makes what a browser's `PushManager.subscribe()` would: an endpoint on
this server, and a P-256 key pair and auth secret whose private half stays here. A push
(`POST /push/<id>`) is accepted only as a real service and browser would: the VAPID JWT
(RFC 8292) must be signed by the key in its `k=`, name this server's origin as `aud`, and
expire in the future but within 24 hours; the body must be `aes128gcm` (RFC 8188) and
decrypt with the subscription's private key and auth secret (RFC 8291). What decrypts is
recorded as a `Delivery` with its plaintext, for tests to assert on.

    with FakePushService() as service:
        sub = service.subscription()            # {"endpoint", "keys": {"p256dh", "auth"}}
        service.queue(500)                      # the next push is answered 500...
        service.queue(429)                      # ...the one after, 429
        service.gone(sub["endpoint"])           # pushes to it are answered 410 from now on
        service.wait_for(1)                     # the Deliveries, arrival order
        service.rejected                        # (status, reason) of pushes refused

Unknown endpoints are answered 404.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Delivery:
    endpoint: str
    headers: dict[str, str]
    plaintext: bytes
    claims: dict[str, Any]
    received_at: float = 0.0  # time.monotonic()

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.plaintext)


@dataclass
class _Browser:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    gone: bool = False


@dataclass
class FakePushService:
    host: str = "127.0.0.1"
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._browsers: dict[str, _Browser] = {}
        self._statuses: list[int] = []
        self._lock = threading.Condition()
        self.requests = 0
        self.delay = 0.0

    # Life cycle

    def __enter__(self) -> FakePushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, reason = service._receive(self.path, dict(self.headers.items()), body)
                payload = reason.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # The browser's side

    def subscription(self) -> dict[str, Any]:
        """A new subscription, as PushSubscription.toJSON() gives it."""
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        endpoint = f"{self.origin}/push/{secrets.token_urlsafe(12)}"
        with self._lock:
            self._browsers[endpoint] = _Browser(key, auth)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"endpoint": endpoint, "keys": {"p256dh": b64url(public), "auth": b64url(auth)}}

    def gone(self, endpoint: str) -> None:
        """The browser unsubscribed: the service answers 410 Gone from now on."""
        with self._lock:
            self._browsers[endpoint].gone = True

    def queue(self, *statuses: int) -> None:
        """Answer the next pushes with these statuses (and drop them), in order."""
        with self._lock:
            self._statuses.extend(statuses)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.deliveries)} of {count} pushes arrived")
                self._lock.wait(left)
            return list(self.deliveries)

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.rejected.clear()
            self._statuses.clear()
            self.requests = 0

    # The service's side

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        headers = {name.lower(): value for name, value in headers.items()}
        endpoint = self.origin + path
        with self._lock:
            self.requests += 1
            browser = self._browsers.get(endpoint)
            status = self._statuses.pop(0) if self._statuses else None
        if self.delay:
            time.sleep(self.delay)
        if browser is None:
            return self._reject(404, "No such subscription.")
        if status is not None:
            return self._reject(status, "Queued answer.")
        if browser.gone:
            return self._reject(410, "Unsubscribed.")
        try:
            claims = self._check_vapid(headers.get("authorization", ""))
        except ValueError as exc:
            return self._reject(401 if "expired" not in str(exc) else 403, str(exc))
        if "ttl" not in headers:
            return self._reject(400, "No TTL header.")
        if headers.get("content-encoding") != "aes128gcm":
            return self._reject(415, "Payloads must be aes128gcm.")
        try:
            plaintext = http_ece.decrypt(
                body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
            )
        except Exception as exc:
            return self._reject(400, f"Could not decrypt: {exc}")
        with self._lock:
            self.deliveries.append(Delivery(endpoint, headers, plaintext, claims, time.monotonic()))
            self._lock.notify_all()
        return 201, ""

    def _reject(self, status: int, reason: str) -> tuple[int, str]:
        with self._lock:
            self.rejected.append((status, reason))
            self._lock.notify_all()
        return status, reason

    def _check_vapid(self, authorization: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("Authorization is not vapid.")
        fields = dict(part.strip().split("=", 1) for part in params.split(",") if "=" in part)
        token, key = fields.get("t", ""), fields.get("k", "")
        try:
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(unb64url(header_b64))
            claims = json.loads(unb64url(claims_b64))
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            raw = unb64url(signature_b64)
        except ValueError as exc:
            raise ValueError(f"Malformed VAPID token: {exc}") from exc
        if header.get("alg") != "ES256" or len(raw) != 64:
            raise ValueError("The token is not ES256.")
        signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(signature, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise ValueError("Bad VAPID signature.") from None
        if claims.get("aud") != self.origin:
            raise ValueError(f"Wrong audience {claims.get('aud')!r}.")
        now = time.time()
        if not isinstance(claims.get("exp"), int) or not now < claims["exp"] <= now + 24 * 3600:
            raise ValueError("The token has expired or lives too long.")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise ValueError("No contact in sub.")
        return claims
