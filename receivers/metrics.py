"""Counting in memory, cheap enough for the receive path; added to the database in the background.

Each process (web, worker) keeps what it counted since its last flush in one dict under a lock.
A daemon thread hands that dict every few seconds to the sink hub/apps.py installs (one upsert
that adds the amounts to the database's totals) and keeps it for the next try when that fails.
So every web process and every worker, in any container, adds to the same totals, and
/metrics reads them from the database (docs/operations.md, "Metrics").

Pure Python: the receive path (and the delivery code above it) imports this module, so it must
not import Django models or anything above receivers.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

# (metric name, label values, part): part is "" for a counter, "sum" or a bucket's upper bound
# (as Prometheus writes it) for a histogram.
Key = tuple[str, tuple[str, ...], str]
Sink = Callable[[dict[Key, float]], None]

UNKNOWN_SOURCE = "(unknown)"

_lock = threading.Lock()
_pending: dict[Key, float] = {}
FAMILIES: dict[str, Counter | Histogram] = {}


class Counter:
    def __init__(self, name: str, documentation: str, labels: Iterable[str]):
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        FAMILIES[name] = self

    def inc(self, *values: str) -> None:
        key = (self.name, values, "")
        # acquire/release: a `with` block cost as much again as the rest of this call.
        _lock.acquire()
        try:
            _pending[key] = _pending.get(key, 0.0) + 1.0
        finally:
            _lock.release()
        if not _flusher.running:
            _flusher.start()

    def add(self, amount: float, *values: str) -> None:
        """Count several at once (what ends in one statement is counted in one call)."""
        key = (self.name, values, "")
        with _lock:
            _pending[key] = _pending.get(key, 0.0) + amount
        if not _flusher.running:
            _flusher.start()


def bucket_bound(bound: float) -> str:
    """A bucket's upper bound as prometheus_client writes it (floatToGoString), for these sizes."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Histogram:
    def __init__(
        self, name: str, documentation: str, labels: Iterable[str], buckets: Iterable[float]
    ):
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.bounds = sorted(float(b) for b in buckets)
        self.parts = [bucket_bound(b) for b in self.bounds] + ["+Inf"]
        FAMILIES[name] = self

    def observe(self, value: float, *values: str) -> None:
        bucket = (self.name, values, self.parts[bisect.bisect_left(self.bounds, value)])
        total = (self.name, values, "sum")
        _lock.acquire()
        try:
            _pending[bucket] = _pending.get(bucket, 0.0) + 1.0
            _pending[total] = _pending.get(total, 0.0) + value
        finally:
            _lock.release()
        if not _flusher.running:
            _flusher.start()


def take() -> dict[Key, float]:
    """Everything counted since the last take, leaving nothing behind."""
    global _pending
    with _lock:
        taken, _pending = _pending, {}
    return taken


def give_back(amounts: dict[Key, float]) -> None:
    """Amounts a failed flush could not store: added again for the next one."""
    with _lock:
        for key, amount in amounts.items():
            _pending[key] = _pending.get(key, 0.0) + amount


class Flusher:
    """The daemon thread of a process that hands what was counted to the sink, and runs the
    jobs that write other in-memory records the same way (receivers/refusals.py)."""

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self.interval = 0.0
        # True also when there is no sink: recording then only counts in memory.
        self.running = True
        self.wake = threading.Event()
        self.failures = 0
        self.jobs: list[Callable[[], None]] = []

    def configure(self, sink: Sink | None, interval: float) -> None:
        # No interval, no flushing at all (not even at exit): the caller takes the counts.
        self.sink = sink if interval > 0 else None
        self.interval = interval
        self.running = self.sink is None

    def start(self) -> None:
        with _lock:
            if self.running:
                return
            self.running = True
        threading.Thread(target=self.run, name="hub-metrics", daemon=True).start()

    def run(self) -> None:
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            self.flush()

    def flush(self) -> bool:
        if self.sink is None:
            return False
        # The jobs first: what they count (refusals dropped) goes with this flush.
        ok = True
        for step in (*self.jobs, self.flush_counts):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - kept and retried; the process goes on
                ok = False
                self.failures += 1
                # One line per outage, not one per try.
                if self.failures == 1:
                    logger.warning("metrics not stored, kept for the next try: %s", exc)
        if ok:
            self.failures = 0
        return ok

    def flush_counts(self) -> None:
        amounts = take()
        if not amounts:
            return
        try:
            self.sink(amounts)
        except Exception:
            give_back(amounts)
            raise

    def after_fork(self) -> None:
        global _lock, _pending
        # The parent flushes what it counted; a lock held in another thread stays held here.
        _lock, _pending = threading.Lock(), {}
        self.wake = threading.Event()
        self.running = self.sink is None


_flusher = Flusher()
os.register_at_fork(after_in_child=_flusher.after_fork)


def flush_to(sink: Sink | None, interval: float) -> None:
    """Hand what is counted to `sink` every `interval` seconds from a thread started at the
    first count (none when interval is 0: take() is then for the caller), and at exit."""
    _flusher.configure(sink, interval)


def also_flush(job: Callable[[], None]) -> None:
    """Run `job` at each flush too: it writes what it kept, and keeps it when that fails."""
    if job not in _flusher.jobs:
        _flusher.jobs.append(job)


def flush_now() -> bool:
    return _flusher.flush()


atexit.register(flush_now)


# What every receive is counted as: one line where the outcome is decided.
received = Counter(
    "hub_events_received",
    "Webhook requests to a receive URL, by source and outcome (reason: why one was rejected).",
    ["source", "outcome", "reason"],
)


def stored(source: str, duplicate: bool) -> None:
    received.inc(source, "duplicate" if duplicate else "stored", "")


def rejected(source: str | None, reason: str) -> None:
    received.inc(source or UNKNOWN_SOURCE, "rejected", reason)
