"""The security baseline: headers, CSRF, and a clean `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

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
