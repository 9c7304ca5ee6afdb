"""The client's address and scheme behind a reverse proxy, believed only from trusted ones."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from calpico.middleware import TrustedProxyMiddleware


def _seen(settings, *, peer: str, trusted=("127.0.0.1", "::1"), **headers):
    settings.TRUSTED_PROXIES = list(trusted)
    seen = {}

    def view(request):
        seen.update(
            addr=request.META["REMOTE_ADDR"],
            peer=request.META["CALPICO_PEER_ADDR"],
            proto=request.META.get("HTTP_X_FORWARDED_PROTO"),
            forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
        )
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR=peer, **headers)
    TrustedProxyMiddleware(view)(request)
    return seen


def test_a_direct_client_is_its_own_address(settings):
    assert _seen(settings, peer="198.51.100.7")["addr"] == "198.51.100.7"


def test_a_direct_client_cannot_claim_an_address_or_https(settings):
    seen = _seen(
        settings, peer="198.51.100.7", HTTP_X_FORWARDED_FOR="10.0.0.1", HTTP_X_FORWARDED_PROTO="https"
    )
    assert seen["addr"] == "198.51.100.7"
    assert seen["proto"] is None
    assert seen["forwarded_for"] is None


def test_behind_a_trusted_proxy_the_visitor_counts(settings):
    seen = _seen(
        settings, peer="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5", HTTP_X_FORWARDED_PROTO="https"
    )
    assert seen == {
        "addr": "203.0.113.5",
        "peer": "127.0.0.1",
        "proto": "https",
        "forwarded_for": "203.0.113.5",
    }


def test_a_forged_left_part_of_the_header_is_ignored(settings):
    """A visitor who sends its own X-Forwarded-For gets the proxy's address appended: the
    rightmost address no trusted proxy has is the one the proxy saw."""
    seen = _seen(settings, peer="::1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5")
    assert seen["addr"] == "203.0.113.5"


def test_a_chain_of_trusted_proxies(settings):
    seen = _seen(
        settings,
        peer="10.0.0.2",
        trusted=("10.0.0.0/24",),
        HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5, 10.0.0.7",
    )
    assert seen["addr"] == "203.0.113.5"


@pytest.mark.parametrize("header", ["", "not-an-address", " , "])
def test_no_usable_header_leaves_the_proxy_address(settings, header):
    assert _seen(settings, peer="127.0.0.1", HTTP_X_FORWARDED_FOR=header)["addr"] == "127.0.0.1"


def test_ipv6_and_bracketed_addresses(settings):
    assert (
        _seen(settings, peer="127.0.0.1", HTTP_X_FORWARDED_FOR="[2001:db8::1]:4711")["addr"] == "2001:db8::1"
    )


def test_nobody_trusted(settings):
    seen = _seen(settings, peer="127.0.0.1", trusted=(), HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert seen["addr"] == "127.0.0.1"
    assert seen["forwarded_for"] is None


@pytest.mark.django_db
def test_the_failed_join_limit_counts_the_visitor_behind_the_proxy(settings, client):
    """rooms.views.invites counts failed invite links per REMOTE_ADDR: the visitor's."""
    from django.test import Client

    settings.RATE_FAILED_JOINS_PER_HOUR = 2
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    visitor = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    other = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.6")
    codes = [visitor.get("/join/nope-nope-nope/").status_code for _ in range(4)]
    assert codes[-1] == 429, codes
    assert other.get("/join/nope-nope-nope/").status_code == 404
