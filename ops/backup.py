"""One archive holding everything Calpico stores, and putting it back.

`manage.py backup DEST` writes `DEST/calpico-backup-<UTC time>.tar.gz`:

- `manifest.json`: the format, when, Calpico's version, the database (vendor, server and
  pg_dump versions), the migrations applied, row counts, and every file with its size and
  SHA-256;
- `database/calpico.sqlite3`: a consistent copy made with SQLite's online backup API while
  the app keeps running, or `database/calpico.pgdump`: `pg_dump --format=custom`;
- `media/...`: profile pictures and message images, as stored under MEDIA_ROOT.

The database is copied first, then the media: a picture uploaded meanwhile may be in the
archive without a row pointing at it (harmless), and one deleted meanwhile is missing (a
message removed while the backup ran). Secrets (SECRET_KEY, VAPID keys, API keys) are not
in it: keep them with your configuration.

Backup and restore stay in one module (over 400 lines): each checks what the other wrote,
and reading them side by side is how the archive's format is kept in step.

The manifest is the archive's last member: each file is hashed as it is added, and one
deleted meanwhile is left out of both. Everything is written inside DEST (a working
directory of its own there, renamed into the archive at the end); nothing is written
anywhere else. `manage.py restore ARCHIVE` checks the manifest and every file against it
before it changes anything, refuses an install that already holds accounts, rooms,
messages or media, stages every file in a hidden scratch directory inside MEDIA_ROOT
before touching the database, and never writes outside the database and MEDIA_ROOT. On
PostgreSQL it restores into an emptied `public` schema.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database/calpico.sqlite3"
PGDUMP_FILE = "database/calpico.pgdump"
CHUNK = 1024 * 1024
# What an empty install may hold: any row here means someone's data would be overwritten.
DATA_MODELS = ("accounts.User", "rooms.Room", "rooms.Message")


class BackupError(Exception):
    """Something an operator must fix; the message says what."""


@dataclass
class Restored:
    manifest: dict[str, Any]
    files: int
    pending_migrations: list[str]


# Writing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _version() -> str:
    try:
        return metadata.version("calpico")
    except metadata.PackageNotFoundError:
        return "unknown"


def _pg_major(version: str) -> int:
    match = re.search(r"(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise BackupError(f"Could not read a PostgreSQL version from {version!r}.")
    return int(match.group(1))


def pg_tool(name: str, server_major: int) -> str:
    """`pg_dump` or `pg_restore` for the server's major version: Debian installs each
    version's tools under /usr/lib/postgresql/<major>/bin; else the one on PATH."""
    versioned = Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")
    if versioned.exists():
        return str(versioned)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (on Debian: apt-get install postgresql-client).")
    return found


def _tool_major(tool: str) -> tuple[int, str]:
    # The tool is PostgreSQL's, found on this machine; its arguments come from the settings.
    result = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)  # noqa: S603
    version = result.stdout.strip().rsplit(" ", 1)[-1] if result.stdout else ""
    match = re.search(r"\(PostgreSQL\)\s+([\d.]+)", result.stdout)
    version = match.group(1) if match else version
    return _pg_major(version), version


def _server_major() -> tuple[int, str]:
    connection.ensure_connection()
    number = connection.pg_version  # type: ignore[attr-defined]  # 150020 for 15.20
    return number // 10000, f"{number // 10000}.{number % 10000}"


def check_pg_tool(name: str) -> tuple[str, str, str]:
    """The tool to use with this server, its version and the server's. A tool older than
    the server cannot read it (pg_dump refuses); a newer one can, and is said so."""
    server_major, server_version = _server_major()
    tool = pg_tool(name, server_major)
    tool_major, tool_version = _tool_major(tool)
    if tool_major < server_major:
        raise BackupError(
            f"{name} {tool_version} is older than the PostgreSQL {server_version} server it must read; "
            f"install postgresql-client-{server_major}."
        )
    if tool_major > server_major:
        log.warning(
            "%s %s is newer than the server (%s): fine for it, said here", name, tool_version, server_version
        )
    return tool, tool_version, server_version


def _pg_env() -> tuple[list[str], dict[str, str]]:
    db = settings.DATABASES["default"]
    args = [f"--dbname={db['NAME']}"]
    if db.get("HOST"):
        args.append(f"--host={db['HOST']}")
    if db.get("PORT"):
        args.append(f"--port={db['PORT']}")
    if db.get("USER"):
        args.append(f"--username={db['USER']}")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


def _snapshot_database(work: Path) -> tuple[str, dict[str, Any]]:
    vendor = connection.vendor
    if vendor == "sqlite":
        target = work / SQLITE_FILE
        target.parent.mkdir(parents=True)
        connection.ensure_connection()
        source = connection.connection
        copy = sqlite3.connect(target)
        try:
            with copy:
                source.backup(copy)  # consistent while others write: SQLite's online backup
        finally:
            copy.close()
        return SQLITE_FILE, {"vendor": "sqlite", "sqlite_version": sqlite3.sqlite_version}
    if vendor == "postgresql":
        tool, tool_version, server_version = check_pg_tool("pg_dump")
        target = work / PGDUMP_FILE
        target.parent.mkdir(parents=True)
        args, env = _pg_env()
        result = subprocess.run(  # noqa: S603
            [tool, "--format=custom", "--no-owner", "--no-privileges", f"--file={target}", *args],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
        return PGDUMP_FILE, {
            "vendor": "postgresql",
            "server_version": server_version,
            "pg_dump_version": tool_version,
        }
    raise BackupError(f"Backups of a {vendor} database are not supported.")


def _media_files() -> Iterator[tuple[Path, str]]:
    root = Path(settings.MEDIA_ROOT)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path, "media/" + path.relative_to(root).as_posix()


def _applied_migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in MigrationRecorder(connection).applied_migrations():
        applied.setdefault(app, []).append(name)
    return {app: sorted(names) for app, names in sorted(applied.items())}


def _counts() -> dict[str, int]:
    return {label: apps.get_model(label).objects.count() for label in DATA_MODELS}


def create_backup(destination: Path) -> Path:
    """Write one archive into `destination` (a directory, made if missing); returns its path."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    name = f"calpico-backup-{now:%Y%m%dT%H%M%SZ}.tar.gz"
    final = destination / name
    if final.exists():
        raise BackupError(f"{final} already exists.")
    work = Path(tempfile.mkdtemp(prefix=".calpico-backup-", dir=destination))
    try:
        database_file, database = _snapshot_database(work)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": now.isoformat(),
            "calpico_version": _version(),
            "database": {**database, "file": database_file},
            "migrations": _applied_migrations(),
            "counts": _counts(),
            "files": [],
        }
        partial = work / "archive.partial"
        # Media is already compressed (pictures, most attachments): level 1 costs far less CPU.
        with tarfile.open(partial, "w:gz", compresslevel=1) as archive:
            for path, arcname in [(work / database_file, database_file), *_media_files()]:
                entry = _add_file(archive, path, arcname)
                if entry is None:
                    log.warning("Backup: %s was deleted while the backup ran", arcname)
                else:
                    manifest["files"].append(entry)
            # Last: it lists what was really written, hashed as it was read.
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o600
            archive.addfile(info, _BytesReader(data))
        partial.chmod(0o600)
        partial.rename(final)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _HashingReader:
    def __init__(self, handle: Any) -> None:
        self.handle, self.digest = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        return chunk


def _add_file(archive: tarfile.TarFile, path: Path, arcname: str) -> dict[str, Any] | None:
    """Add one file, hashing it as it is read; None if it is gone (deleted meanwhile)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    with handle:
        stat = os.fstat(handle.fileno())
        info = tarfile.TarInfo(arcname)
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
        reader = _HashingReader(handle)
        archive.addfile(info, reader)
    return {"path": arcname, "size": info.size, "sha256": reader.digest.hexdigest()}


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        chunk, self.position = self.data[self.position : end], min(end, len(self.data))
        return chunk


# Reading


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        not path.is_absolute()
        and ".." not in path.parts
        and "\\" not in name
        and "\0" not in name
        and str(path) == name
        and (name == MANIFEST or name in (SQLITE_FILE, PGDUMP_FILE) or name.startswith("media/"))
    )


DATABASE_FILES = {"sqlite": SQLITE_FILE, "postgresql": PGDUMP_FILE}


def _check_manifest(manifest: Any) -> dict[str, Any]:
    """Everything restore reads from the manifest, checked before anything is read by it."""

    def bad(what: str) -> BackupError:
        return BackupError(f"The archive's manifest.json is malformed: {what}.")

    if not isinstance(manifest, dict):
        raise bad("not an object")
    if manifest.get("format") != FORMAT:
        raise BackupError(
            f"Backup format {manifest.get('format')!r} is not one this version reads ({FORMAT})."
        )
    database = manifest.get("database")
    if not isinstance(database, dict):
        raise bad("no database")
    vendor = database.get("vendor")
    if vendor not in DATABASE_FILES:
        raise bad(f"an unknown database vendor {vendor!r}")
    if database.get("file") != DATABASE_FILES[vendor]:
        raise bad(f"the database file must be {DATABASE_FILES[vendor]}")
    if not isinstance(manifest.get("counts", {}), dict):
        raise bad("counts is not an object")
    if not isinstance(manifest.get("created_at", ""), str):
        raise bad("created_at is not a text")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise bad("no list of files")
    paths = set()
    for entry in files:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            raise bad(f"a file entry without path, size and sha256: {entry!r:.100}")
        if entry["path"] == MANIFEST or not _safe_name(entry["path"]):
            raise bad(f"it lists {entry['path']!r}, which a Calpico backup never does")
        if entry["path"] in paths:
            raise bad(f"it lists {entry['path']} twice")
        paths.add(entry["path"])
    if database["file"] not in paths:
        raise bad(f"it does not list the database file {database['file']}")
    return manifest


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = archive.getmember(MANIFEST)
    except KeyError:
        raise BackupError("This is not a Calpico backup: it has no manifest.json.") from None
    handle = archive.extractfile(member)
    if handle is None:
        raise BackupError("manifest.json is not a file.")
    try:
        manifest = json.loads(handle.read())
    except ValueError as exc:
        raise BackupError(f"The archive's manifest.json is malformed: {exc}.") from None
    return _check_manifest(manifest)


def verify(path: Path) -> dict[str, Any]:
    """Check an archive without changing anything: only names we write, only regular files,
    each once, none where another needs a directory, each exactly as the manifest lists it.
    Returns the manifest."""
    try:
        return _verify(path)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{path} is not a readable archive: {exc}") from None


def _verify(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:*") as archive:
        manifest = read_manifest(archive)
        expected = {entry["path"]: entry for entry in manifest["files"]}
        seen: set[str] = set()
        manifests = 0
        for member in archive.getmembers():
            if member.name == MANIFEST:
                manifests += 1
                if manifests > 1:
                    raise BackupError("The archive holds manifest.json twice.")
                continue
            if not member.isfile() or not _safe_name(member.name):
                raise BackupError(f"The archive holds {member.name!r}, which a Calpico backup never does.")
            if member.name in seen:
                raise BackupError(f"The archive holds {member.name} twice.")
            entry = expected.get(member.name)
            if entry is None:
                raise BackupError(f"{member.name} is in the archive but not in its manifest.")
            handle = archive.extractfile(member)
            assert handle is not None
            digest, size = hashlib.sha256(), 0
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
            if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                raise BackupError(f"{member.name} does not match the manifest: the archive is damaged.")
            seen.add(member.name)
        missing = set(expected) - seen
        if missing:
            raise BackupError(f"The archive lacks {sorted(missing)[0]}, which its manifest lists.")
        directories = {str(parent) for name in seen for parent in PurePosixPath(name).parents}
        clash = seen & directories
        if clash:
            raise BackupError(f"The archive holds {sorted(clash)[0]} as both a file and a directory.")
    return manifest


def _tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def check_empty() -> None:
    """Refuse to restore over anyone's data: rows or media already there."""
    tables = _tables()
    for label in DATA_MODELS:
        model = apps.get_model(label)
        if model._meta.db_table in tables and model.objects.exists():
            raise BackupError(
                f"This install already has data ({model._meta.verbose_name_plural}); restore into an "
                "empty database and an empty MEDIA_ROOT."
            )
    media = Path(settings.MEDIA_ROOT)
    if media.is_dir() and any(path.is_file() for path in media.rglob("*")):
        raise BackupError(f"MEDIA_ROOT ({media}) already holds files; restore into an empty one.")


def _restore_sqlite(snapshot: Path) -> None:
    connection.close()
    target = sqlite3.connect(settings.DATABASES["default"]["NAME"])
    source = sqlite3.connect(snapshot)
    try:
        with target:
            source.backup(target)
    finally:
        source.close()
        target.close()


def _empty_schema() -> None:
    """Start from an empty schema: a database migrated by a later version has tables the
    backup lacks, whose foreign keys would keep `pg_restore --clean` from dropping the
    backup's tables. check_empty() made sure none of them holds anyone's data."""
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")


def _restore_postgresql(dump: Path) -> None:
    tool, _, _ = check_pg_tool("pg_restore")
    args, env = _pg_env()
    _empty_schema()
    connection.close()
    result = subprocess.run(  # noqa: S603
        [
            tool,
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            *args,
            str(dump),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()}")


def _pending_migrations() -> list[str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def restore_backup(path: Path) -> Restored:
    """Put an archive back into this (empty) install: all checked first, the files staged,
    then the database, then the media moved into place."""
    path = Path(path)
    manifest = verify(path)
    vendor = manifest["database"]["vendor"]
    if vendor != connection.vendor:
        raise BackupError(f"This backup is of a {vendor} database; this install uses {connection.vendor}.")
    check_empty()
    media_root = Path(settings.MEDIA_ROOT).resolve()
    media_root.mkdir(parents=True, exist_ok=True)
    placed: list[tuple[Path, Path]] = []
    with (
        tempfile.TemporaryDirectory(prefix=".calpico-restore-", dir=media_root) as scratch,
        tarfile.open(path, "r:*") as archive,
    ):
        # Everything is written to scratch first (the same file system as MEDIA_ROOT): a
        # failure there leaves the database and MEDIA_ROOT as they were.
        for member in archive.getmembers():
            if member.name == MANIFEST:
                continue
            staged = Path(scratch) / member.name
            if member.name.startswith("media/"):
                target = (media_root / member.name.removeprefix("media/")).resolve()
                if not target.is_relative_to(media_root):
                    raise BackupError(f"{member.name} would be written outside MEDIA_ROOT.")
                placed.append((staged, target))
            staged.parent.mkdir(parents=True, exist_ok=True)
            handle = archive.extractfile(member)
            assert handle is not None
            with staged.open("xb") as out:
                shutil.copyfileobj(handle, out, CHUNK)
        snapshot = Path(scratch) / manifest["database"]["file"]
        if vendor == "sqlite":
            _restore_sqlite(snapshot)
        else:
            _restore_postgresql(snapshot)
        for staged, target in placed:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise BackupError(f"{target} appeared while restoring; MEDIA_ROOT must stay empty.")
            os.replace(staged, target)
    return Restored(manifest=manifest, files=len(placed), pending_migrations=_pending_migrations())
