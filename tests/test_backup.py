"""`manage.py backup` and `manage.py restore`: a round trip into a fresh install, byte for byte.

The round trip runs the commands as an operator would, in processes of their own: one
install is migrated and filled (tests/backup_seed.py), backed up, and the archive restored
into a second, empty install (its own var/ directory and, on PostgreSQL, its own
database). Rooms, memberships, messages and accounts must read back the same, and every
avatar and attachment must be the same bytes.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from django.db import connection

from ops import backup
from tests.browser.conftest import INHERITED_ENV, PROJECT_DIR, _throwaway_database

DUMPED = ["accounts.User", "rooms.Room", "rooms.Membership", "rooms.Message", "assistant.Memory"]


def _env(var_dir: Path, database_url: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if os.environ.get(name)}
    env.update(DJANGO_SETTINGS_MODULE="calpico.settings", CALPICO_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    else:
        env.pop("DATABASE_URL", None)
    return env


def _run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _round_trip(tmp_path: Path, source_url: str, target_url: str) -> None:
    source = _env(tmp_path / "source", source_url)
    _run(source, "manage.py", "migrate", "--noinput")
    _run(source, "-m", "tests.backup_seed")
    destination = tmp_path / "backups"
    archive = Path(_run(source, "manage.py", "backup", str(destination)).stdout.strip())
    assert archive.parent == destination
    # Nothing but the archive is left in DEST, and nothing was written beside it.
    assert [p.name for p in destination.iterdir()] == [archive.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "source"]
    assert archive.stat().st_mode & 0o077 == 0

    target = _env(tmp_path / "target", target_url)
    restored = _run(target, "manage.py", "restore", str(archive))
    assert "Restored the backup" in restored.stdout
    assert "migrate" not in restored.stdout  # the same code: nothing left to migrate
    _run(target, "manage.py", "migrate", "--check")

    dump = ["manage.py", "dumpdata", *DUMPED, "--indent", "1"]
    before, after = _run(source, *dump).stdout, _run(target, *dump).stdout
    assert json.loads(before), "the seed made nothing"
    assert after == before
    rows = json.loads(after)
    assert {row["model"] for row in rows} == {
        "accounts.user",
        "rooms.room",
        "rooms.membership",
        "rooms.message",
        "assistant.memory",
    }

    media_before, media_after = _files(tmp_path / "source" / "media"), _files(tmp_path / "target" / "media")
    assert any(name.startswith("avatars/") for name in media_before)
    assert any(name.startswith("attachments/") for name in media_before)
    assert media_after == media_before  # byte for byte

    # A second restore into the now full install is refused, and changes nothing.
    again = _run(target, "manage.py", "restore", str(archive), check=False)
    assert again.returncode != 0
    assert "already has data" in again.stderr
    assert _run(target, *dump).stdout == before


def test_round_trip_embedded(tmp_path):
    """SQLite, copied with its online backup API."""
    _round_trip(tmp_path, "", "")


@pytest.mark.services
def test_round_trip_postgresql(tmp_path):
    """pg_dump's custom format and pg_restore, into a database of its own."""
    url = os.environ.get("DATABASE_URL", "")
    with _throwaway_database(url) as source_url, _throwaway_database(url) as target_url:
        _round_trip(tmp_path, source_url, target_url)


# Archives that are not ours, or were changed


def _archive(tmp_path: Path, members: dict[str, bytes], manifest: dict | None = None) -> Path:
    if manifest is None:
        manifest = {
            "format": backup.FORMAT,
            "database": {"vendor": connection.vendor, "file": backup.SQLITE_FILE},
            "counts": {},
            "files": [
                {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in members.items()
            ],
        }
    path = tmp_path / "made.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {"manifest.json": json.dumps(manifest).encode(), **members}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "name",
    ["media/../../escaped.txt", "/etc/passwd", "media/a/../../b", "secret_key", "media\\..\\x", "media//x"],
)
def test_an_archive_naming_another_place_is_refused(tmp_path, name):
    path = _archive(tmp_path, {name: b"x"})
    with pytest.raises(backup.BackupError, match="never does"):
        backup.verify(path)


def test_a_link_in_the_archive_is_refused(tmp_path):
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        data = json.dumps({"format": backup.FORMAT, "files": []}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("media/avatars/a.webp")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    with pytest.raises(backup.BackupError, match="never does"):
        backup.verify(path)


def test_a_changed_file_is_refused_before_anything_changes(tmp_path):
    members = {backup.SQLITE_FILE: b"database", "media/avatars/a.webp": b"picture"}
    manifest_source = _archive(tmp_path, members)
    with tarfile.open(manifest_source) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())
    path = _archive(tmp_path, {**members, "media/avatars/a.webp": b"another picture"}, manifest)
    with pytest.raises(backup.BackupError, match="damaged"):
        backup.verify(path)


def test_a_file_missing_from_the_manifest_is_refused(tmp_path):
    manifest = {"format": backup.FORMAT, "files": []}
    with pytest.raises(backup.BackupError, match="not in its manifest"):
        backup.verify(_archive(tmp_path, {"media/x.webp": b"x"}, manifest))


def test_something_else_is_not_a_backup(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(backup.BackupError, match="no manifest"):
        backup.verify(path)


def test_a_newer_format_is_refused(tmp_path):
    with pytest.raises(backup.BackupError, match="format"):
        backup.verify(_archive(tmp_path, {}, {"format": 99, "files": []}))


def test_the_commands_say_what_is_wrong(tmp_path):
    env = _env(tmp_path / "var", "")
    missing = _run(env, "manage.py", "restore", str(tmp_path / "nope.tar.gz"), check=False)
    assert missing.returncode == 1
    assert "No such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_pg_tools_older_than_the_server_are_refused(monkeypatch):
    monkeypatch.setattr(backup, "_server_major", lambda: (16, "16.4"))
    monkeypatch.setattr(backup, "pg_tool", lambda name, major: "/usr/bin/pg_dump")
    monkeypatch.setattr(backup, "_tool_major", lambda tool: (15, "15.20"))
    with pytest.raises(backup.BackupError, match="postgresql-client-16"):
        backup.check_pg_tool("pg_dump")
