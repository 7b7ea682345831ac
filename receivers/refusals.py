"""Refused requests, recorded without slowing receiving and without filling the disk.

`refuse()` is the one call where a receive is refused: it counts the refusal in the metrics
and keeps a compact record (time, slug, reason and its detail, address, body size; never a
header) in this process's memory, at most HUB_REFUSALS_PER_MINUTE per source and minute;
beyond that it only counts, and the receive path logs only what was kept. Requests to no
known source share one allowance, so made-up slugs create nothing.

The metrics flusher's thread (receivers/metrics.py) calls `flush()`: one transaction stores
the records and adds the counts to RefusalMinute, which holds the same cap for every process
together (a record the database's cap leaves out is counted as dropped, like one the memory's
cap left out). When the database is down, records stay in memory for the next flush, up to
MAX_KEPT; then they are only counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from . import metrics
from .models import Refusal, RefusalMinute, Source

logger = logging.getLogger(__name__)

SLUG_CHARS = Refusal._meta.get_field("slug").max_length
ADDRESS_CHARS = Refusal._meta.get_field("remote_addr").max_length
DETAIL_CHARS = Refusal._meta.get_field("detail").max_length
# Records a process keeps while the database cannot take them; beyond this they are counted.
MAX_KEPT = 10_000

dropped_metric = metrics.Counter(
    "hub_refusals_dropped",
    "Refused requests counted but not stored: over HUB_REFUSALS_PER_MINUTE for their source.",
    ["source"],
)

# The time a refusal is recorded at (a name of its own so that tests can hold the minute still).
clock = time.time

# (source id or None, minute as Unix seconds): the cap's unit.
Bucket = tuple[int | None, int]


@dataclass(slots=True)
class Record:
    at: float
    slug: str
    source_id: int | None
    reason: str
    remote_addr: str
    body_size: int
    detail: str = ""


@dataclass(slots=True)
class Count:
    """What a bucket saw in this process since the last flush."""

    refused: int = 0
    label: str = metrics.UNKNOWN_SOURCE


class Buffer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[Bucket, Count] = {}
        self.records: list[Record] = []

    def add(self, record: Record, cap: int, label: str) -> bool:
        """Count a refusal; keep its record unless over the cap. True when it was kept."""
        bucket = (record.source_id, int(record.at // 60) * 60)
        with self.lock:
            count = self.counts.get(bucket)
            if count is None:
                count = self.counts[bucket] = Count(label=label)
            count.refused += 1
            if count.refused <= cap and len(self.records) < MAX_KEPT:
                self.records.append(record)
                return True
        return False

    def take(self) -> tuple[dict[Bucket, Count], list[Record]]:
        with self.lock:
            taken = self.counts, self.records
            self.counts, self.records = {}, []
        return taken

    def give_back(self, counts: dict[Bucket, Count], records: list[Record]) -> None:
        with self.lock:
            for bucket, count in counts.items():
                mine = self.counts.setdefault(bucket, Count(label=count.label))
                mine.refused += count.refused
            self.records = (records + self.records)[:MAX_KEPT]

    def after_fork(self) -> None:
        # The parent stores what it kept; a lock held in another thread stays held here.
        self.__init__()


_buffer = Buffer()
os.register_at_fork(after_in_child=_buffer.after_fork)


def refuse(
    reason: str,
    slug: str,
    source_id: int | None,
    remote_addr: str,
    body_size: int,
    detail: str = "",
) -> bool:
    """Count a refused request and keep its record within the cap; True when it was kept (the
    caller logs only those). `source_id` is None when the slug named no active source, or was
    not looked up (a body too large). `detail` says why for the operator, never a secret."""
    reason = str(reason)
    metrics.rejected(None if source_id is None else slug, reason)
    slug = slug[:SLUG_CHARS]
    address = remote_addr[:ADDRESS_CHARS]
    record = Record(clock(), slug, source_id, reason, address, body_size, detail[:DETAIL_CHARS])
    label = metrics.UNKNOWN_SOURCE if source_id is None else slug
    return _buffer.add(record, settings.HUB_REFUSALS_PER_MINUTE, label)


def flush() -> None:
    """Store what this process kept and counted; on failure it is kept for the next flush."""
    counts, records = _buffer.take()
    if not counts:
        return
    try:
        store(counts, records, settings.HUB_REFUSALS_PER_MINUTE)
    except Exception:
        _buffer.give_back(counts, records)
        raise


def discard() -> None:
    """Forget what this process kept and counted (tests: each starts without another's)."""
    _buffer.take()


def flush_from_flusher() -> None:
    """flush() for the metrics flusher's thread: a broken connection is dropped afterwards."""
    try:
        flush()
    finally:
        connection.close_if_unusable_or_obsolete()


def store(counts: dict[Bucket, Count], records: list[Record], cap: int) -> None:
    """One transaction: the records the cap leaves, and every count, per source and minute."""
    counts, grouped = by_bucket(counts, records)
    dropped: list[tuple[int, str]] = []
    with transaction.atomic():
        minutes = lock_minutes(counts)
        kept: list[Refusal] = []
        for bucket, count in counts.items():
            row, mine = minutes[bucket], grouped.get(bucket, [])
            room = max(0, min(len(mine), cap - row.stored))
            kept += [refusal_row(r, bucket[0]) for r in mine[:room]]
            row.stored += room
            row.refused += count.refused
            if count.refused > room:
                dropped.append((count.refused - room, count.label))
        Refusal.objects.bulk_create(kept)
        RefusalMinute.objects.bulk_update(list(minutes.values()), ["refused", "stored"])
    # Counted once stored: a failed flush is tried again with the same counts.
    for amount, label in dropped:
        dropped_metric.add(amount, label)


def by_bucket(
    counts: dict[Bucket, Count], records: list[Record]
) -> tuple[dict[Bucket, Count], dict[Bucket, list[Record]]]:
    """Counts and records by the bucket they are stored in. A source deleted since counts as
    no known source; a record to no active source whose slug names one (a disabled source)
    moves to that source's bucket, with its count."""
    ids = {source_id for source_id, _ in counts if source_id is not None}
    alive = set(Source.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()
    merged: dict[Bucket, Count] = {}
    for (source_id, minute), count in counts.items():
        bucket = (source_id if source_id in alive else None, minute)
        label = count.label if bucket[0] is not None else metrics.UNKNOWN_SOURCE
        merged.setdefault(bucket, Count(label=label)).refused += count.refused
    slugs = {r.slug for r in records if r.source_id not in alive}
    found = dict(Source.objects.filter(slug__in=slugs).values_list("slug", "pk")) if slugs else {}
    grouped: dict[Bucket, list[Record]] = {}
    for record in records:
        minute = int(record.at // 60) * 60
        counted_as = record.source_id if record.source_id in alive else None
        source_id = counted_as if counted_as is not None else found.get(record.slug)
        if source_id != counted_as:
            merged[(None, minute)].refused -= 1
            merged.setdefault((source_id, minute), Count(label=record.slug)).refused += 1
        grouped.setdefault((source_id, minute), []).append(record)
    return {bucket: c for bucket, c in merged.items() if c.refused}, grouped


def refusal_row(record: Record, source_id: int | None) -> Refusal:
    return Refusal(
        at=datetime.fromtimestamp(record.at, tz=UTC),
        source_id=source_id,
        slug=record.slug,
        reason=record.reason,
        remote_addr=record.remote_addr,
        body_size=record.body_size,
        detail=record.detail,
    )


def lock_minutes(counts: dict[Bucket, Count]) -> dict[Bucket, RefusalMinute]:
    """The RefusalMinute rows of these buckets, created when missing and locked until commit,
    so that processes flushing at once share the cap instead of each taking all of it."""
    RefusalMinute.objects.bulk_create(
        [RefusalMinute(source_id=s, minute=minute_of(m)) for s, m in counts],
        ignore_conflicts=True,
    )
    wanted = Q()
    for source_id, minute in counts:
        source = Q(source__isnull=True) if source_id is None else Q(source_id=source_id)
        wanted |= source & Q(minute=minute_of(minute))
    rows = RefusalMinute.objects.select_for_update().filter(wanted)
    return {(row.source_id, int(row.minute.timestamp())): row for row in rows}


def minute_of(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
