"""HTTP through calpico.asgi, the way daphne serves it: Django's handler with the
middleware and the view run as one synchronous call (calpico/handlers.py)."""

import sys
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator

from calpico.asgi import application
from rooms import services
from rooms.models import Message
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)

CSRF = "k" * 32


async def request(method: str, path: str, *, cookies: str = "", body: bytes = b"", headers=()):
    head = [(b"host", b"testserver"), *headers]
    if cookies:
        head.append((b"cookie", cookies.encode()))
    communicator = HttpCommunicator(application, method, path, body=body, headers=head)
    return await communicator.get_response(timeout=5)


async def session_of(user) -> str:
    client = await sync_to_async(client_for)(user)
    return f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF}"


def header(response, name: bytes) -> str:
    return next((v.decode() for k, v in response["headers"] if k.lower() == name), "")


async def test_pages_are_served_with_the_security_headers():
    response = await request("GET", "/accounts/login/")
    assert response["status"] == 200
    assert "script-src 'self'" in header(response, b"content-security-policy")
    assert header(response, b"x-frame-options") == "DENY"


async def test_a_post_runs_its_middleware_and_view_in_one_thread(alice, group, monkeypatch):
    from django.contrib.sessions.middleware import SessionMiddleware

    threads = {}
    real_request = SessionMiddleware.process_request
    real_post = services.do_post_message_as

    def session_request(self, request):
        threads["middleware"] = threading.get_ident()
        return real_request(self, request)

    def post(*args, **kwargs):
        threads["view"] = threading.get_ident()
        frame, callers = sys._getframe(), []
        while frame is not None:
            callers.append(type(frame.f_locals.get("self")))
            frame = frame.f_back
        threads["callers"] = callers
        return real_post(*args, **kwargs)

    monkeypatch.setattr(SessionMiddleware, "process_request", session_request)
    monkeypatch.setattr(services, "do_post_message_as", post)
    response = await request(
        "POST",
        f"/r/{group.pk}/messages/",
        cookies=await session_of(alice),
        body=b"body=over+ASGI",
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"x-csrftoken", CSRF.encode()),
            (b"hx-request", b"true"),
        ],
    )
    assert response["status"] == 200, response["body"][:300]
    assert b"over ASGI" in response["body"]
    assert await sync_to_async(Message.objects.filter(room=group, body="over ASGI").exists)()
    assert threads["middleware"] == threads["view"] != threading.get_ident()
    # Called from inside the session middleware, not from a hop back through the loop.
    assert SessionMiddleware in threads["callers"]


async def test_refusals_and_missing_rooms_keep_their_status(alice, group):
    cookies = await session_of(alice)
    missing = await request("GET", "/r/999999/", cookies=cookies)
    assert missing["status"] == 404
    forged = await request(
        "POST",
        f"/r/{group.pk}/messages/",
        cookies=cookies,
        body=b"body=no+token",
        headers=[(b"content-type", b"application/x-www-form-urlencoded")],
    )
    assert forged["status"] == 403
    assert not await sync_to_async(Message.objects.filter(body="no token").exists)()
