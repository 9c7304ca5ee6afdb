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
    if target_url:
        # An operator who ran `migrate` first, with a later version: a table the backup lacks
        # has a foreign key to accounts_user (pg_restore --clean could not drop its key).
        _run(target, "manage.py", "migrate", "--noinput")
        _run(
            target,
            "-c",
            "import django; django.setup(); from django.db import connection; "
            "connection.cursor().execute('CREATE TABLE later_feature (id serial PRIMARY KEY, "
            "user_id bigint REFERENCES accounts_user (id))')",
        )
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


def _manifest(files: list[dict]) -> dict:
    return {
        "format": backup.FORMAT,
        "created_at": "2026-01-01T00:00:00+00:00",
        "database": {"vendor": "sqlite", "file": backup.SQLITE_FILE},
        "counts": {},
        "files": files,
    }


def _entries(members: dict[str, bytes]) -> list[dict]:
    return [
        {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in members.items()
    ]


def _archive(
    tmp_path: Path,
    members: dict[str, bytes] | list[tuple[str, bytes]],
    manifest: dict | bytes | None = None,
) -> Path:
    pairs = list(members.items()) if isinstance(members, dict) else members
    if manifest is None:
        manifest = _manifest(_entries(dict(pairs)))
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    path = tmp_path / "made.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, content in [*pairs, ("manifest.json", data)]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


DATABASE = {backup.SQLITE_FILE: b"database"}


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b"[]",
        {"format": 1},
        {**_manifest([]), "files": [{"path": backup.SQLITE_FILE}]},
        {**_manifest(_entries(DATABASE)), "database": {"vendor": "sqlite"}},
        {**_manifest(_entries(DATABASE)), "database": {"vendor": "sqlite", "file": "media/x"}},
        {**_manifest(_entries(DATABASE)), "database": {"vendor": "sqlite", "file": backup.PGDUMP_FILE}},
        {**_manifest(_entries(DATABASE)), "database": {"vendor": "oracle", "file": backup.SQLITE_FILE}},
        {**_manifest(_entries(DATABASE) * 2)},
        {**_manifest(_entries(DATABASE)), "counts": []},
    ],
)
def test_a_malformed_manifest_is_refused_clearly(tmp_path, manifest):
    with pytest.raises(backup.BackupError, match="manifest"):
        backup.verify(_archive(tmp_path, DATABASE, manifest))


def test_a_duplicate_member_is_refused(tmp_path):
    """Two members of one name: extracting the second would fail half-way (FileExistsError)."""
    members = [*DATABASE.items(), ("media/a.webp", b"x"), ("media/a.webp", b"x")]
    path = _archive(tmp_path, members, _manifest(_entries(dict(members))))
    with pytest.raises(backup.BackupError, match="twice"):
        backup.verify(path)


def test_a_file_where_a_directory_must_be_is_refused(tmp_path):
    members = {**DATABASE, "media/a": b"x", "media/a/b.webp": b"y"}
    with pytest.raises(backup.BackupError, match="both a file and a directory"):
        backup.verify(_archive(tmp_path, members))


def test_a_bad_archive_fails_without_a_traceback_and_changes_nothing(tmp_path):
    env = _env(tmp_path / "var", "")
    _run(env, "manage.py", "migrate", "--noinput")
    members = [*DATABASE.items(), ("media/a.webp", b"x"), ("media/a.webp", b"x")]
    for archive in (
        _archive(tmp_path, {**DATABASE, "media/a.webp": b"x"}, b"{"),
        _archive(tmp_path, members, _manifest(_entries(dict(members)))),
        _archive(tmp_path, {**DATABASE, "media/a": b"x", "media/a/b": b"y"}),
    ):
        result = _run(env, "manage.py", "restore", str(archive), check=False)
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "var" / "media").exists() or not any((tmp_path / "var" / "media").rglob("*"))


@pytest.mark.django_db
def test_a_media_file_deleted_while_the_backup_runs_is_left_out(tmp_path, settings, monkeypatch):
    media = tmp_path / "media"
    (media / "avatars").mkdir(parents=True)
    (media / "avatars" / "kept.webp").write_bytes(b"kept")
    (media / "avatars" / "gone.webp").write_bytes(b"gone")
    settings.MEDIA_ROOT = str(media)
    listed = backup._media_files

    def deleting_after_listing():
        files = list(listed())
        (media / "avatars" / "gone.webp").unlink()
        yield from files

    def snapshot(work):
        (work / "database").mkdir()
        (work / backup.SQLITE_FILE).write_bytes(b"database")
        return backup.SQLITE_FILE, {"vendor": "sqlite"}

    monkeypatch.setattr(backup, "_media_files", deleting_after_listing)
    # The test database is shared in memory (or the shared PostgreSQL one): not what is tested.
    monkeypatch.setattr(backup, "_snapshot_database", snapshot)
    archive = backup.create_backup(tmp_path / "backups")
    manifest = backup.verify(archive)
    assert [entry["path"] for entry in manifest["files"]] == [backup.SQLITE_FILE, "media/avatars/kept.webp"]
    with tarfile.open(archive) as opened:
        # The manifest comes last: it lists what was really written.
        assert opened.getnames()[-1] == "manifest.json"


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
        data = json.dumps(_manifest(_entries(DATABASE))).encode()
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
    manifest = _manifest(_entries(DATABASE))
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
