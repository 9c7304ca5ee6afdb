"""Several processes share the pushes and none is sent twice: two `manage.py
assistant_worker` processes (each runs a job runner) on PostgreSQL claim the same queue
of notification jobs, sending to tests/fake_push.py."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.models import Job
from notifications import jobs as push_jobs
from notifications import services as push_services
from rooms import services
from tests.conftest import make_user, membership
from tests.fake_push import FakePushService
from tests.test_multiprocess import _database_url

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PROJECT_DIR = Path(__file__).resolve().parents[1]
PEOPLE = 30


def test_two_processes_send_every_push_exactly_once(settings, tmp_path):
    with FakePushService() as push_service:
        settings.PUSH_SERVICE_HOSTS = ["127.0.0.1"]
        alice = make_user("alice", "Alice Liddell")
        endpoints = []
        for n in range(PEOPLE):
            person = make_user(f"person{n}")
            subscription = push_service.subscription()
            keys = subscription["keys"]
            push_services.do_subscribe(person, subscription["endpoint"], keys["p256dh"], keys["auth"], "")
            endpoints.append(subscription["endpoint"])
            room = services.do_open_direct_room(person, alice)  # alice answers: a direct message
            services.do_post_message(membership(room, alice), f"Hello {n}")
        assert Job.objects.filter(kind=push_jobs.MESSAGE, status=Job.Status.QUEUED).count() == PEOPLE

        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TZ") if os.environ.get(name)}
        env.update(
            DJANGO_SETTINGS_MODULE="calpico.settings",
            CALPICO_VAR_DIR=str(tmp_path),
            SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=_database_url(),
            REDIS_URL=settings.REDIS_URL,
            CACHE_KEY_PREFIX=f"push-processes-{os.getpid()}",
            PUSH_SERVICE_HOSTS="127.0.0.1",
            JOBS_POLL_SECONDS="0.05",
            PYTHONUNBUFFERED="1",
        )
        workers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "assistant_worker"],
                cwd=PROJECT_DIR,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for _ in range(2)
        ]
        try:
            deliveries = push_service.wait_for(PEOPLE, timeout=60)
            # Let any second sending of a push arrive before counting.
            deadline = time.monotonic() + 60
            while Job.objects.exclude(status=Job.Status.DONE).exists():
                assert time.monotonic() < deadline, list(Job.objects.exclude(status=Job.Status.DONE).values())
                time.sleep(0.1)
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=20)
        deliveries = list(push_service.deliveries)
        assert sorted(d.endpoint for d in deliveries) == sorted(endpoints)
        assert sorted(d.payload["body"] for d in deliveries) == sorted(f"Hello {n}" for n in range(PEOPLE))
        assert push_service.requests == PEOPLE
