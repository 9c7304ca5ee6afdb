import contextlib
import io
import os
import uuid

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import translation
from PIL import Image

from accounts.models import User
from calpico import languages
from rooms import services

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _default_language():
    """A request leaves its language active in the thread (LocaleMiddleware activates one per
    request and never resets it): each test starts, and leaves, in the default language."""
    translation.activate(django_settings.LANGUAGE_CODE)
    yield
    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _media_and_cache(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The assistant is unconfigured unless a test asks for the fake server.
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    # Many tests fill rooms with messages; tests/test_rate_limits.py switches these back on.
    settings.RATE_MESSAGES_PER_10_SECONDS = 0
    settings.RATE_MESSAGES_PER_HOUR = 0
    # Tests drive runners themselves; the ASGI app must not start one per test loop.
    settings.ASSISTANT_RUNNER_IN_SERVER = False
    # Decisions are claimable at once: tests wait for events, not for pauses.
    settings.ASSISTANT_DECIDE_PAUSE_SECONDS = 0.0
    settings.JOBS_RUNNER_IN_SERVER = False
    if settings.REDIS_URL:
        # A fresh key prefix isolates each test without flushing a Redis others may share.
        prefix = f"calpico-test-{uuid.uuid4().hex}"
        settings.CACHES = {alias: {**conf, "KEY_PREFIX": prefix} for alias, conf in settings.CACHES.items()}
    else:
        from django.core.cache import caches

        for alias in settings.CACHES:
            caches[alias].clear()
    languages.forget_marks()  # with a fresh prefix or an emptied cache, the marks are gone


def make_user(username: str, display_name: str = "") -> User:
    return User.objects.create_user(username=username, password=PASSWORD, display_name=display_name)


@pytest.fixture
def alice(db) -> User:
    return make_user("alice", "Alice Liddell")


@pytest.fixture
def bob(db) -> User:
    return make_user("bob", "Bob Builder")


@pytest.fixture
def carol(db) -> User:
    return make_user("carol")


@pytest.fixture
def mallory(db) -> User:
    """Someone who is in none of the rooms under test."""
    return make_user("mallory")


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice) -> Client:
    return client_for(alice)


@pytest.fixture
def bob_client(bob) -> Client:
    return client_for(bob)


@pytest.fixture
def carol_client(carol) -> Client:
    return client_for(carol)


@pytest.fixture
def mallory_client(mallory) -> Client:
    return client_for(mallory)


@pytest.fixture
def group(alice, bob, carol):
    """A group owned by alice with bob and carol."""
    return services.do_create_group(alice, "Trip planning", [bob, carol])


@pytest.fixture
def direct(alice, bob):
    """An established direct conversation: bob has accepted alice's first message."""
    room = services.do_open_direct_room(alice, bob)
    services.do_accept_request(membership(room, bob))
    return room


def membership(room, user):
    return room.memberships.select_related("room", "user").get(user=user)


def image_bytes(fmt: str = "PNG", size=(300, 200), colour=(200, 30, 30), **save_kwargs) -> bytes:
    image = Image.new("RGB", size, colour)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


HTMX = {"HTTP_HX_REQUEST": "true"}
# The composer's own sends (static/js/composer.js): it says it resets itself after a send.
COMPOSER = {**HTMX, "HTTP_CALPICO_COMPOSER": "resets"}


def post(client: Client, room, body: str, *, client_id=None, headers: dict | None = None, **fields):
    """Send `body` to the room from the composer as the client's user: a fresh client_id
    unless given (as the page does), other form fields (`reply_to`) and request headers."""
    data = {"body": body, "client_id": str(client_id or uuid.uuid4()), **fields}
    return client.post(reverse("rooms:post_message", args=[room.pk]), data, **(headers or {}))


@pytest.fixture(autouse=True)
def _fresh_channel_layer(monkeypatch):
    """Each test gets its own channel layer (as settings choose it), and sockets answer the
    barrier events of tests/sockets.py."""
    from channels.layers import channel_layers

    from rooms.consumers import RoomConsumer
    from tests.sockets import answer_barrier

    monkeypatch.setattr(RoomConsumer, "user_test_barrier", answer_barrier, raising=False)
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


class Announcements(list):
    """The (group, event) pairs the live layer was asked to send, in order."""

    def to(self, group: str) -> list[dict]:
        return [event for sent_to, event in self if sent_to == group]

    def of_type(self, kind: str) -> list[tuple[str, dict]]:
        return [(group, event) for group, event in self if event["type"] == kind]


class _RecordingLayer:
    def __init__(self, sent: Announcements) -> None:
        self.sent = sent

    async def group_send(self, group: str, event: dict) -> None:
        self.sent.append((group, event))


@pytest.fixture
def events(monkeypatch, django_capture_on_commit_callbacks):
    """`with events() as sent:` records what the code in the block announces to pages,
    instead of sending it: its on-commit callbacks run at the end of the block, as a commit
    would run them, and `sent` lists every (group, event) that `rooms.live` (its
    `send_event` and `push_partial_text`) gave the channel layer. Proves what was announced
    without a socket or a wait."""
    sent = Announcements()
    monkeypatch.setattr("rooms.live.get_channel_layer", lambda: _RecordingLayer(sent))

    @contextlib.contextmanager
    def capture():
        start = len(sent)
        block = Announcements()
        with django_capture_on_commit_callbacks(execute=True):
            yield block
        block.extend(sent[start:])

    return capture


CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _services_required(request):
    """Tests marked `services` need PostgreSQL and Redis. Without them they skip on a
    laptop and fail under CI, where a skip would hide a broken set-up."""
    if request.node.get_closest_marker("services") is None:
        return
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    if on_postgres and settings.REDIS_URL:
        return
    reason = "needs DATABASE_URL on PostgreSQL and REDIS_URL (see README, 'PostgreSQL and Redis')"
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def fake_openai(settings):
    """Our fake OpenAI-compatible server, with Calpico pointed at it."""
    from tests.fake_openai import FakeOpenAI

    with FakeOpenAI(api_key="test-key") as fake:
        settings.OPENAI_API_KEY = "test-key"
        settings.OPENAI_BASE_URL = fake.base_url
        settings.ASSISTANT_TIMEOUT_SECONDS = 2.0
        yield fake
