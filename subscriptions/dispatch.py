"""Telling the workers that events were stored, without making the answer wait for the broker.

The receive endpoint must stay fast and must answer even when Redis is down (eDRV disables a
webhook that fails too often). So it only wakes a background thread, which asks the workers
to fan out every pending event. If that fails nothing is lost: the events stay `pending` in
the database and the periodic sweep (subscriptions.services.sweep) finds them.

One request covers every event stored before it, so the thread sends at most one per
FAN_OUT_GAP_SECONDS: with a Redis broker the gap is shared by every web process (a key set
with NX and an expiry), otherwise it is kept per process: a request per event would cost each
web process a broker round trip and the worker a task per event.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import current_app
from django.conf import settings

from . import work
from .services import fanout

logger = logging.getLogger(__name__)

FAN_OUT_GAP_SECONDS = 0.05
GATE_KEY = "hub:fan-out-requested"
# After a failed request (the broker is down) wait this long; the sweep covers the gap.
RETRY_SECONDS = 1.0

_wanted = threading.Event()
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_lock = threading.Lock()


def on_event_stored(sender, event_id: int, **kwargs) -> None:
    """receivers.signals.event_stored's receiver (connected in SubscriptionsConfig.ready)."""
    announce_stored(event_id)


def announce_stored(event_id: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        fanout.fan_out([event_id])
        return
    _ensure_thread()
    _wanted.set()


def _ensure_thread() -> None:
    global _thread, _thread_pid
    # After a fork (gunicorn, celery prefork) the parent's thread does not exist here.
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return
        _thread = threading.Thread(target=_request_forever, name="hub-announcer", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()


def _request_forever() -> None:
    gate = make_gate()
    while True:
        _wanted.wait()
        wait = gate.wait_seconds()
        if wait > 0:
            # Another request went out moments ago; once the gap is over, one more is
            # needed, since the worker may have read the pending events before ours.
            time.sleep(wait)
            continue
        _wanted.clear()
        if not publish_fan_out():
            time.sleep(RETRY_SECONDS)


class LocalGate:
    """At most one request per gap from this process."""

    def __init__(self, gap: float = FAN_OUT_GAP_SECONDS):
        self.gap = gap
        self.next_at = 0.0

    def wait_seconds(self) -> float:
        now = time.monotonic()
        if now < self.next_at:
            return self.next_at - now
        self.next_at = now + self.gap
        return 0.0


class RedisGate:
    """At most one request per gap from all web processes: the first to set the key sends."""

    def __init__(self, url: str, gap: float = FAN_OUT_GAP_SECONDS):
        import redis

        self.gap_ms = max(1, int(gap * 1000))
        self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)

    def wait_seconds(self) -> float:
        try:
            if self.client.set(GATE_KEY, b"1", nx=True, px=self.gap_ms):
                return 0.0
            remaining = self.client.pttl(GATE_KEY)
        except Exception as exc:  # noqa: BLE001 - Redis down: publishing fails and is retried
            logger.debug("fan-out gate unavailable: %s", exc)
            return 0.0
        return max(remaining, 1) / 1000


def prepare() -> None:
    """Pay, before serving, what the first announcement would (finalizing the Celery app,
    loading the broker client), so that no request waits for it."""
    current_app.finalize(auto=True)
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        _ensure_thread()


def make_gate() -> LocalGate | RedisGate:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        return RedisGate(url)
    return LocalGate()


def publish_fan_out() -> bool:
    try:
        work.request(work.FAN_OUT_PENDING)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure is handled by the sweep
        logger.warning("broker unavailable, stored events are left for the sweep: %s", exc)
        return False
