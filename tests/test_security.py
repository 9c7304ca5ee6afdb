"""The security baseline: headers, CSRF, and a clean `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def test_pages_send_a_content_security_policy_without_inline_script(alice_client):
    policy = alice_client.get(reverse("rooms:index"))["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_pages_have_no_inline_script_or_style(alice_client, group):
    for url in (reverse("rooms:index"), group.get_absolute_url(), reverse("accounts:profile_settings")):
        body = alice_client.get(url).content.decode()
        assert "<script>" not in body and "<script " not in body.replace("<script src=", "")
        assert " style=" not in body and "<style" not in body
        assert " onclick=" not in body and "hx-on" not in body


def test_posting_needs_a_csrf_token(alice, group):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("rooms:post_message", args=[group.pk]), {"body": "forged"})
    assert response.status_code == 403
    assert not group.messages.filter(body="forged").exists()


def test_production_settings_pass_check_deploy(tmp_path):
    env = {
        **os.environ,
        "CALPICO_VAR_DIR": str(tmp_path),
        "DEBUG": "false",
        "HTTPS": "true",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "chat.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_embedded_mode_generates_and_keeps_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env["CALPICO_VAR_DIR"] = str(tmp_path)
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    command = [
        sys.executable,
        "-c",
        f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='calpico.settings'; {code}",
    ]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert first == second and len(first.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


# The general /media/ view: profile pictures only, by their stored name


@pytest.fixture
def stored_attachment(settings):
    """A message image on disk, as rooms.attachments stores it (served to members only)."""
    folder = Path(settings.MEDIA_ROOT) / "attachments"
    folder.mkdir(parents=True)
    (folder / "secret.webp").write_bytes(b"RIFF-not-for-you")
    avatars = Path(settings.MEDIA_ROOT) / "avatars"
    avatars.mkdir()
    (avatars / "face.webp").write_bytes(b"RIFF-a-face")
    return "secret.webp"


def test_media_serves_profile_pictures_to_signed_in_people(mallory_client, stored_attachment):
    response = mallory_client.get("/media/avatars/face.webp")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF-a-face"


@pytest.mark.parametrize(
    "path",
    [
        "/media/attachments/secret.webp",
        "/media//attachments/secret.webp",
        "/media///attachments/secret.webp",
        "/media/%2Fattachments/secret.webp",
        "/media/avatars/%2e%2e/attachments/secret.webp",
        "/media/avatars/%2E%2E/attachments/secret.webp",
        "/media/avatars/../attachments/secret.webp",
        "/media/avatars/./../attachments/secret.webp",
        "/media/avatars//../attachments/secret.webp",
        "/media/avatars%2F..%2Fattachments%2Fsecret.webp",
        "/media/avatars/..%2Fattachments%2Fsecret.webp",
        "/media/avatars/..%5Cattachments%5Csecret.webp",
        "/media/avatars\\..\\attachments\\secret.webp",
        "/media/./attachments/secret.webp",
        "/media/%2e/attachments/secret.webp",
        "/media/avatars/./face.webp",
        "/media/avatars//face.webp",
        "/media/avatars/face.webp%00",
    ],
)
def test_media_refuses_paths_that_are_not_a_plain_avatar_name(mallory_client, stored_attachment, path):
    """Message images are served by the room view to members only; no spelling of their
    path gets them through the general media view."""
    response = mallory_client.get(path)
    assert response.status_code == 404
    assert b"RIFF" not in b"".join(getattr(response, "streaming_content", [response.content]))


# Where "next" may send people


BAD_TARGETS = [
    "//evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    " //evil.example",
    "\t//evil.example",
    "///evil.example",
]
GOOD_TARGETS = ["/rooms/", "/r/1/", "/settings/blocked/", "/u/bob/?tab=1#top"]


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_block_and_unblock_never_redirect_off_site(alice_client, bob, target):
    for name in ("accounts:block", "accounts:unblock"):
        response = alice_client.post(reverse(name, args=["bob"]), {"next": target})
        assert response.status_code == 302
        assert response["Location"] == bob.get_absolute_url()


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_block_and_unblock_go_back_to_the_page_they_came_from(alice_client, bob, target):
    for name in ("accounts:block", "accounts:unblock"):
        response = alice_client.post(reverse(name, args=["bob"]), {"next": target})
        assert response["Location"] == target


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_logging_in_never_redirects_off_site(client, alice, target):
    response = client.post(reverse("account_login"), {"login": "alice", "password": PASSWORD, "next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("rooms:index")


@pytest.mark.parametrize("target", GOOD_TARGETS)
def test_logging_in_goes_on_to_the_page_asked_for(client, alice, target):
    response = client.post(reverse("account_login"), {"login": "alice", "password": PASSWORD, "next": target})
    assert response["Location"] == target
