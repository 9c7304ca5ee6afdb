from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ops.backup import BackupError, create_backup


class Command(BaseCommand):
    help = (
        "Write one archive of the database (SQLite's online backup, or pg_dump's custom format) "
        "and MEDIA_ROOT, with a manifest, into the directory DEST. Safe while Calpico runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("destination", help="A directory; the archive is named by the time.")

    def handle(self, *args, destination: str, **options):
        try:
            path = create_backup(Path(destination))
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(str(path))
