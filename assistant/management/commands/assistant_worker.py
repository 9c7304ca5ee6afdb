import asyncio
import logging
import signal

from django.core.management.base import BaseCommand

from assistant import runner
from jobs import runner as jobs_runner

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Do assistant runs queued by the web processes (PostgreSQL + Redis deployments). "
        "Run as many as you like; each run is claimed by exactly one. Set "
        "ASSISTANT_RUNNER_IN_SERVER=false to leave the runs to workers only. It does durable "
        "jobs (data exports) too, as web processes do unless JOBS_RUNNER_IN_SERVER=false. On "
        "SIGTERM or Ctrl-C the runs and the job in progress go back to the queue at once, for "
        "another worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=None, help="Runs streaming at once.")

    def handle(self, *args, concurrency=None, **options):
        worker = runner.Runner(concurrency=concurrency)
        runner.install(worker)
        jobs_runner.start(worker.worker)
        self.stdout.write(f"Assistant worker {worker.worker} ready; Ctrl-C to stop.")
        handed = asyncio.run(self.serve(worker))
        self.stdout.write(f"Stopped; {handed} run(s) in progress handed back to the queue.")

    async def serve(self, worker: runner.Runner) -> int:
        """Serve until SIGTERM or SIGINT, then hand the running runs back."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        worker.serve_task = loop.create_task(worker.serve())
        stopping = loop.create_task(stop.wait())
        await asyncio.wait({worker.serve_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if worker.serve_task.done() and not worker.serve_task.cancelled():
            worker.serve_task.result()  # serve() only ends by an error: show it
        handed: int = await worker.shut_down()
        await asyncio.to_thread(jobs_runner.shut_down)
        return handed
