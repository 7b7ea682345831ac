"""The sweep hands out again whatever a lost broker message or a dead worker left, so that
nothing depends on the broker alone: due retries, claims a crashed worker left `sending`,
events whose fan-out request was lost.

Every worker process runs it every HUB_SWEEP_SECONDS from a thread of its own, and beat sends
it as a task on the same schedule: recovery goes on without beat, and with several beats. A
PostgreSQL advisory lock lets one sweep run at a time; one that finds it taken skips its turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from receivers.connections import drop_broken_connections
from receivers.models import Event, EventStatus

from .. import selectors, work
from ..models import Delivery, DeliveryStatus, Subscription
from . import sequencing
from .backfill import resume_backfills
from .fanout import fan_out
from .outcomes import disable_subscription
from .watch import watch

logger = logging.getLogger(__name__)

PENDING_GRACE = timedelta(seconds=2)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Find work whose broker message was lost or whose worker died, and hand it out again."""
    now = now or timezone.now()
    counts = {"stale_events": 0, "expired_claims": 0, "drains": 0, "disabled": 0, "alerts": 0}
    counts["expired_deliveries"] = sequencing.expire_everywhere(now)
    stale = list(
        Event.objects.filter(status=EventStatus.PENDING, received_at__lt=now - PENDING_GRACE)
        .order_by("received_at")
        .values_list("pk", flat=True)[:5000]
    )
    for start in range(0, len(stale), 500):
        counts["stale_events"] += len(stale[start : start + 500])
        fan_out(stale[start : start + 500])
    counts["expired_claims"] = Delivery.objects.filter(
        status=DeliveryStatus.SENDING, claimed_until__lt=now
    ).update(status=DeliveryStatus.PENDING, claimed_until=None)
    Subscription.objects.filter(lease_until__lt=now).update(lease_until=None)
    cutoff = now - timedelta(hours=settings.HUB_DISABLE_AFTER_HOURS)
    for sub_id in Subscription.objects.filter(is_active=True, failing_since__lt=cutoff).values_list(
        "pk", flat=True
    ):
        hours = settings.HUB_DISABLE_AFTER_HOURS
        disable_subscription(sub_id, f"Every delivery failed for more than {hours} hours.")
        counts["disabled"] += 1
    due = set(selectors.due_deliveries(now).values_list("subscription_id", flat=True).distinct())
    counts["drains"] = len(due)
    work.request_drains(due)
    counts["backfills"] = resume_backfills(now)
    try:
        counts["alerts"] = watch(now)
    except Exception:  # noqa: BLE001 - the alerts must never stop the sweep's own work
        logger.exception("checking the alerts' conditions failed")
    if any(counts.values()):
        logger.info("sweep found work: %s", counts)
    return counts


# The advisory lock's key: any number that nothing else in the database locks ("hubswp").
SWEEP_LOCK_KEY = 0x687562737770
# Without PostgreSQL (the embedded default: SQLite, one worker process) a lock in the process.
_process_lock = threading.Lock()


@contextmanager
def sweep_lock() -> Iterator[bool]:
    """Yields whether this caller may sweep now. PostgreSQL releases a session's advisory lock
    when the session ends: a sweeper that dies holds nothing."""
    if connection.vendor != "postgresql":
        acquired = _process_lock.acquire(blocking=False)
        try:
            yield acquired
        finally:
            if acquired:
                _process_lock.release()
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [SWEEP_LOCK_KEY])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SWEEP_LOCK_KEY])


def sweep_unless_running() -> dict[str, int] | None:
    """The sweep, unless another process (or thread) is sweeping right now: then None."""
    with sweep_lock() as acquired:
        return sweep() if acquired else None


def sweep_forever(stop: threading.Event) -> None:
    """A worker process's own sweeps, the first at once (a worker that starts after a crash
    finds what the crash left), then every HUB_SWEEP_SECONDS until `stop` is set."""
    while True:
        try:
            sweep_unless_running()
        except Exception as exc:  # noqa: BLE001 - the database or broker is down: next turn
            logger.warning("sweep failed: %s: %s", exc.__class__.__name__, exc)
        finally:
            drop_broken_connections()
        if stop.wait(settings.HUB_SWEEP_SECONDS):
            return


def start_sweeper() -> threading.Event:
    """Start a worker process's sweeper thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=sweep_forever, args=(stop,), name="hub-sweeper", daemon=True).start()
    return stop
