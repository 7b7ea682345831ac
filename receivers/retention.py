"""Deleting events older than HUB_RETENTION_DAYS, in small batches that never block receiving;
the record of refused requests is kept exactly as long."""

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Event, Refusal, RefusalMinute

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
        ids = list(
            Event.objects.filter(received_at__lt=cutoff)
            .order_by("received_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return deleted
        # One short transaction per batch: new events are inserted meanwhile, never blocked.
        with transaction.atomic():
            Event.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        if progress:
            progress(deleted)


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
