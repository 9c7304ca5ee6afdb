import asyncio
import logging

from django.core.management.base import BaseCommand

from assistant import runner

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Do assistant runs queued by the web processes (PostgreSQL + Redis deployments). "
        "Run as many as you like; each run is claimed by exactly one. Set "
        "ASSISTANT_RUNNER_IN_SERVER=false to leave the runs to workers only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=None, help="Runs streaming at once.")

    def handle(self, *args, concurrency=None, **options):
        worker = runner.Runner(concurrency=concurrency)
        runner.install(worker)
        self.stdout.write(f"Assistant worker {worker.worker} ready; Ctrl-C to stop.")
        try:
            asyncio.run(worker.serve())
        except KeyboardInterrupt:
            self.stdout.write("Stopped; runs in progress are picked up again by another worker.")
