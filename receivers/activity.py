"""What each source has been doing: its last event, whether it fell silent, what was refused.

Read-only queries for the admin, the dashboard, the metrics and the alerts; each is a few index
probes per source (the last event by event_source_received_idx, the refusals of a day from at
most 1,440 RefusalMinute rows), whatever the number of events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from .models import Event, Refusal, RefusalMinute, Source
from .providers import get_provider

DAY = timedelta(hours=24)


def with_activity(sources: QuerySet[Source], now: datetime) -> QuerySet[Source]:
    """Sources annotated with `last_event_at`, `refused_day` (refusals in the last 24 hours,
    the ones over the cap included), `last_refusal_at` and `last_refusal_reason`."""
    last_event = Event.objects.filter(source=OuterRef("pk")).order_by("-received_at")
    day = (
        RefusalMinute.objects.filter(source=OuterRef("pk"), minute__gte=now - DAY)
        .order_by()
        .values("source")
        .annotate(n=Sum("refused"))
        .values("n")
    )
    last_refusal = Refusal.objects.filter(source=OuterRef("pk")).order_by("-at", "-id")
    return sources.annotate(
        last_event_at=Subquery(last_event.values("received_at")[:1]),
        refused_day=Coalesce(Subquery(day), 0),
        last_refusal_at=Subquery(last_refusal.values("at")[:1]),
        last_refusal_reason=Subquery(last_refusal.values("reason")[:1]),
    )


def silent_since(source: Source, last_event_at: datetime | None, now: datetime) -> datetime | None:
    """Since when a source with an expected interval has been silent (its last event, or its
    creation when it never sent one), or None when it is not silent."""
    if source.expected_interval is None or not source.is_active:
        return None
    since = last_event_at or source.created_at
    return since if now - since > source.expected_interval else None


@dataclass
class Silence:
    source: Source
    since: datetime

    @property
    def note(self) -> str:
        """What the platform does to a webhook that keeps failing: a likely cause."""
        return get_provider(self.source.provider).failure_note


def watched(now: datetime) -> list[tuple[Source, datetime | None]]:
    """Active sources with an expected interval, each with its last event's time."""
    sources = with_activity(
        Source.objects.filter(is_active=True, expected_interval__isnull=False), now
    )
    return [(source, source.last_event_at) for source in sources.order_by("slug")]


def silences(now: datetime) -> list[Silence]:
    found = []
    for source, last_event_at in watched(now):
        since = silent_since(source, last_event_at, now)
        if since is not None:
            found.append(Silence(source, since))
    return found


def refused_per_source(since: datetime) -> dict[int | None, int]:
    """Refusals since a moment, per source id (None: requests to no known source)."""
    rows = (
        RefusalMinute.objects.filter(minute__gte=since)
        .values("source")
        .annotate(n=Sum("refused"))
        .order_by()
    )
    return {row["source"]: row["n"] for row in rows}


def rejecting_sources(threshold: int, since: datetime) -> list[tuple[Source, int]]:
    """Sources refused more than `threshold` times since a moment, with the count."""
    rows = (
        RefusalMinute.objects.filter(minute__gte=since, source__isnull=False)
        .values("source")
        .annotate(n=Sum("refused"))
        .filter(n__gt=threshold)
        .order_by()
    )
    counts = {row["source"]: row["n"] for row in rows}
    sources = Source.objects.filter(pk__in=counts).order_by("slug")
    return [(source, counts[source.pk]) for source in sources]


def recent_refusals(source: Source, limit: int = 10) -> list[Refusal]:
    return list(source.refusals.order_by("-at", "-id")[:limit])


def dropped_day(source: Source, now: datetime) -> int:
    """Refusals of the last 24 hours that the cap did not store."""
    total = (
        RefusalMinute.objects.filter(source=source, minute__gte=now - DAY)
        .annotate(dropped=F("refused") - F("stored"))
        .aggregate(n=Sum("dropped"))["n"]
    )
    return total or 0
