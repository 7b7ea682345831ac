"""`python manage.py healthcheck web|worker|beat`: docker-compose.yml's healthchecks.

Exits 0 when the process of that kind in this container is alive: web answers /healthz on
$PORT; a worker or beat on this host left a heartbeat within 3 × HUB_SWEEP_SECONDS.
"""

import os
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from hub import health

PROBE_TIMEOUT_SECONDS = 5


class Command(BaseCommand):
    help = "Exit 0 when this container's web server, worker or beat is alive."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", choices=["web", "worker", "beat"])

    def handle(self, *args, kind: str, **options) -> None:
        problem = probe_web() if kind == "web" else heartbeat_problem(kind)
        if problem:
            raise CommandError(problem)
        self.stdout.write(f"{kind}: ok")


def probe_web() -> str:
    url = f"http://127.0.0.1:{os.environ.get('PORT') or 8000}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return "" if answer.status == 200 else f"/healthz answered {answer.status}"
    except OSError as exc:
        return f"/healthz did not answer: {exc}"


def heartbeat_problem(kind: str) -> str:
    name = health.worker_name() if kind == "worker" else health.beat_name()
    try:
        return health.age_problem(health.last_beat(name), f"heartbeat of {name}")
    except Exception as exc:  # noqa: BLE001 - any failure is an unhealthy answer
        return f"heartbeat unreadable ({exc.__class__.__name__})"
