"""Deleting events older than HUB_RETENTION_DAYS, in small batches that never block receiving;
the record of refused requests is kept exactly as long.

The ids of deleted events move to the replay ledger (SeenEvent) in the same transaction, and
stay there for HUB_DEDUP_DAYS: a captured request replayed after the purge is a duplicate.
"""

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Event, Refusal, RefusalMinute, SeenEvent

BATCH = 1000


def purge_old_events(
    days: int | None = None,
    batch_size: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Delete old events with their deliveries and attempts, and old refusals; returns how
    many events went."""
    cutoff = timezone.now() - timedelta(days=days or settings.HUB_RETENTION_DAYS)
    purge_old_refusals(cutoff, batch_size)
    deleted = 0
    while True:
        rows = list(
            Event.objects.filter(received_at__lt=cutoff)
            .order_by("received_at")
            .values_list("pk", "source_id", "external_id", "received_at")[:batch_size]
        )
        if not rows:
            break
        # One short transaction per batch: new events are inserted meanwhile, never blocked.
        # The ids are in the ledger before their rows go, so a replay is a duplicate throughout.
        with transaction.atomic():
            SeenEvent.objects.bulk_create(
                [SeenEvent(source_id=s, external_id=e, received_at=r) for _, s, e, r in rows],
                ignore_conflicts=True,
            )
            Event.objects.filter(pk__in=[row[0] for row in rows]).delete()
        deleted += len(rows)
        if progress:
            progress(deleted)
    forget_old_ids(batch_size)
    return deleted


def forget_old_ids(batch_size: int = BATCH) -> int:
    """Drop ledger ids older than HUB_DEDUP_DAYS, in batches; returns how many went."""
    cutoff = timezone.now() - timedelta(days=settings.HUB_DEDUP_DAYS)
    forgotten = 0
    while True:
        batch = SeenEvent.objects.filter(received_at__lt=cutoff).order_by("received_at")
        keys = list(batch.values_list("source_id", "external_id")[:batch_size])
        if not keys:
            return forgotten
        SeenEvent.objects.filter(pk__in=keys).delete()
        forgotten += len(keys)


def purge_old_refusals(cutoff, batch_size: int = BATCH) -> int:
    """Refusals and their per-minute counts from before `cutoff`; returns how many refusals."""
    deleted = 0
    while True:
        ids = list(
            Refusal.objects.filter(at__lt=cutoff)
            .order_by("at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        Refusal.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    RefusalMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted
