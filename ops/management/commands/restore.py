import tarfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, restore_backup, verify


class Command(BaseCommand):
    help = (
        "Restore an archive written by `manage.py backup` into an empty install (a new database, "
        "an empty MEDIA_ROOT). Every file is checked against the manifest first. Stop the web "
        "processes and workers before."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only check the archive against its manifest; change nothing.",
        )

    def handle(self, *args, archive: str, check: bool = False, **options):
        try:
            if check:
                manifest = verify(Path(archive))
                self.stdout.write(f"{archive}: {len(manifest['files'])} files match the manifest.")
                return
            restored = restore_backup(Path(archive))
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:  # the archive missing or unreadable, a disk full, a permission
            raise CommandError(f"{exc.strerror or exc}: {exc.filename or archive}") from exc
        except (KeyError, ValueError, tarfile.TarError) as exc:
            raise CommandError(f"{archive} could not be restored: {exc!r}") from exc
        counts = ", ".join(f"{n} {label}" for label, n in restored.manifest["counts"].items())
        self.stdout.write(
            f"Restored the backup of {restored.manifest['created_at']}: {counts}, {restored.files} files."
        )
        if restored.pending_migrations:
            self.stdout.write(
                f"This version has {len(restored.pending_migrations)} migration(s) the backup predates: "
                "run `manage.py migrate` now."
            )
