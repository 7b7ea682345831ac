"""Telling the workers that events were stored, without making the answer wait for the broker.

The receive endpoint must stay fast and must answer even when Redis is down (eDRV disables a
webhook that fails too often). So it only drops the new event id on an in-process queue; a
background thread publishes the ids in batches. If a publish fails nothing is lost: the event
row stays `pending` and the periodic sweep (subscriptions.services.sweep) finds it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

BATCH = 200
# Waiting this long for more ids turns a publish per event into one per burst: each publish
# costs the web process about a millisecond of CPU, the wait costs the relay 10 ms at most.
LINGER_SECONDS = 0.01
_queue: queue.SimpleQueue[int] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_pid: int | None = None
_lock = threading.Lock()


def announce_stored(event_id: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        from .services import fan_out

        fan_out([event_id])
        return
    _ensure_thread()
    _queue.put(event_id)


def _ensure_thread() -> None:
    global _thread, _thread_pid
    # After a fork (gunicorn, celery prefork) the parent's thread does not exist here.
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return
        _thread = threading.Thread(target=_publish_forever, name="hub-announcer", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()


def _publish_forever() -> None:
    while True:
        ids = [_queue.get()]
        deadline = time.monotonic() + LINGER_SECONDS
        while len(ids) < BATCH:
            remaining = deadline - time.monotonic()
            try:
                ids.append(_queue.get(timeout=remaining) if remaining > 0 else _queue.get_nowait())
            except queue.Empty:
                break
        publish_fan_out(ids)


def publish_fan_out(ids: list[int]) -> bool:
    from .tasks import fan_out_events

    try:
        fan_out_events.apply_async(args=[ids], retry=False)
        return True
    except Exception as exc:  # noqa: BLE001 - any broker failure is handled by the sweep
        logger.warning("broker unavailable, %d event(s) left for the sweep: %s", len(ids), exc)
        return False
