"""Health: /healthz (the process answers), /readyz (the hub can do its work), and heartbeats.

Workers and beat leave heartbeats as rows in the database, which the web processes read
whatever container they run in (docs/operations.md, "Health"):
- `worker@<host>`: every Celery worker process, every HUB_SWEEP_SECONDS, from a thread;
- `beat@<host>`: beat, each time it sends the sweep;
- `beat-sweep`: a worker, each time it runs a sweep that beat sent (a sweep run any other
  way does not count), so a fresh one means that beat, the broker and a worker all work.
"""

from __future__ import annotations

import socket
import threading
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from .models import Heartbeat

BEAT_SWEEP = "beat-sweep"
SWEEP_TASK = "subscriptions.tasks.sweep"
OK = "ok"


def worker_name() -> str:
    return f"worker@{socket.gethostname()}"


def beat_name() -> str:
    return f"beat@{socket.gethostname()}"


def max_age() -> timedelta:
    """How old a heartbeat may be: three periods, so one late or lost beat is not an alarm."""
    return timedelta(seconds=3 * settings.HUB_SWEEP_SECONDS)


def beat(name: str) -> None:
    """Record a sign of life now (one upsert)."""
    Heartbeat.objects.bulk_create(
        [Heartbeat(name=name, at=timezone.now())],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["at"],
    )


def last_beat(name: str, prefix: bool = False) -> datetime | None:
    beats = Heartbeat.objects.filter(**{"name__startswith" if prefix else "name": name})
    return max(beats.values_list("at", flat=True), default=None)


def age_problem(at: datetime | None, what: str) -> str:
    """'' when `at` is recent enough, otherwise what is wrong, in words."""
    if at is None:
        return f"no {what} yet"
    age = (timezone.now() - at).total_seconds()
    if age > max_age().total_seconds():
        return f"last {what} {age:.0f}s ago (more than {max_age().seconds}s)"
    return ""


def beat_forever(name: str, stop: threading.Event) -> None:
    while True:
        try:
            beat(name)
        except Exception:  # noqa: BLE001, S110 - the database is down: /readyz says so
            pass
        finally:
            connection.close_if_unusable_or_obsolete()
        if stop.wait(settings.HUB_SWEEP_SECONDS):
            return


def start_worker_heartbeat() -> threading.Event:
    """A worker process's heartbeat thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=beat_forever, args=(worker_name(), stop), name="hub-heartbeat", daemon=True
    ).start()
    return stop


# Readiness ----------------------------------------------------------------------------------

_migrated = False


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return OK


def check_migrations() -> str:
    global _migrated
    if _migrated:
        return OK  # applied migrations stay applied while this process runs
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        return f"{len(plan)} migration(s) not applied"
    _migrated = True
    return OK


def check_broker() -> str:
    with current_app.connection_for_write() as broker:
        # One try, bounded by the transport's connect timeout (settings): no retry loop.
        broker.ensure_connection(max_retries=0)
    return OK


def check_beat() -> str:
    return age_problem(last_beat(BEAT_SWEEP), "sweep sent by beat") or OK


def check_workers() -> str:
    return age_problem(last_beat("worker@", prefix=True), "worker heartbeat") or OK


CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "broker": check_broker,
    "beat": check_beat,
    "workers": check_workers,
}
NEEDS_DATABASE = ("migrations", "beat", "workers")


def readiness() -> dict[str, str]:
    """Each check's result: "ok", or what failed (never an internal address or a secret)."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        if name in NEEDS_DATABASE and results["database"] != OK:
            results[name] = "not checked: the database is unavailable"
            continue
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure is an answer here
            results[name] = f"unavailable ({exc.__class__.__name__})"
    if results["database"] != OK:
        connection.close()
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    ready = all(result == OK for result in checks.values())
    response = JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
    # The 503 is the probe's answer, not a failed request: no ERROR line from Django per probe.
    response._has_been_logged = True
    return response
