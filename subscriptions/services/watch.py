"""The conditions the sweep checks every HUB_SWEEP_SECONDS: sources refused too often, sources
gone silent, a high backlog. Each check is a few indexed queries, whatever the traffic: the
refusals come from their per-minute counts, the backlog from a count that stops at the
threshold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count

from receivers import activity
from receivers.models import RefusalReason, Source

from .. import work
from ..models import Alert, AlertKind, Delivery
from ..selectors import BACKLOG_STATUSES
from .alerts import hub_source, raise_alert

# An alert whose notices a lost task message never sent is handed out again after this.
NOTIFY_GRACE = timedelta(seconds=10)


def watch(now: datetime) -> int:
    """Open what is wrong, clear what is right again; returns how many alerts were opened."""
    hub_source()  # so that subscriptions can choose it before the first alert
    opened = rejecting(now) + silent(now) + backlog(now)
    Alert.objects.filter(cleared_at__lt=now - timedelta(days=settings.HUB_RETENTION_DAYS)).delete()
    if Alert.objects.filter(notified_at=None, opened_at__lt=now - NOTIFY_GRACE).exists():
        work.request(work.NOTIFY_ALERTS)
    return opened


@dataclass
class Wrong:
    """A condition found wrong: what raise_alert says about it."""

    message: str
    data: dict
    source: Source | None = None


def settle(kind: str, wrong: dict[str, Wrong], now: datetime) -> int:
    """Raise an alert per key in `wrong` (none while one is open), clear the kind's others."""
    opened = 0
    for key, found in wrong.items():
        opened += raise_alert(kind, key, found.message, found.data, source=found.source) is not None
    clear_others(kind, wrong, now)
    return opened


def clear_others(kind: str, keep, now: datetime) -> None:
    Alert.objects.filter(kind=kind, cleared_at=None).exclude(key__in=list(keep)).update(
        cleared_at=now
    )


def rejecting(now: datetime) -> int:
    minutes = settings.HUB_ALERT_REFUSALS_MINUTES
    since = now - timedelta(minutes=minutes)
    wrong = {}
    for source, count in activity.rejecting_sources(settings.HUB_ALERT_REFUSALS, since):
        last = source.refusals.order_by("-at", "-id").values_list("reason", flat=True).first()
        reason = RefusalReason(last).label if last else "not stored"
        wrong[f"source:{source.pk}"] = Wrong(
            f"{source.slug}: {count} requests refused in {minutes} minutes (the last: {reason}).",
            {"refused": count, "minutes": minutes, "last_reason": last},
            source,
        )
    return settle(AlertKind.SOURCE_REJECTING, wrong, now)


def silent(now: datetime) -> int:
    wrong = {}
    for silence in activity.silences(now):
        source = silence.source
        message = (
            f"{source.slug}: nothing received for more than {source.expected_interval} "
            f"(since {silence.since:%Y-%m-%d %H:%M:%S} UTC). {silence.note}"
        )
        data = {
            "since": silence.since,
            "expected_interval_seconds": source.expected_interval.total_seconds(),
            "note": silence.note,
        }
        wrong[f"source:{source.pk}"] = Wrong(message.strip(), data, source)
    return settle(AlertKind.SOURCE_SILENT, wrong, now)


def backlog(now: datetime) -> int:
    threshold = settings.HUB_ALERT_BACKLOG
    waiting = Delivery.objects.filter(status__in=BACKLOG_STATUSES)
    # The count stops at the threshold: a big backlog costs no more to check than a small one.
    if waiting.values("pk")[: threshold + 1].count() <= threshold:
        clear_others(AlertKind.BACKLOG_HIGH, [], now)
        return 0
    if Alert.objects.filter(kind=AlertKind.BACKLOG_HIGH, cleared_at=None).exists():
        return 0
    busiest = list(
        waiting.values("subscription__name")
        .annotate(n=Count("pk"))
        .order_by("-n")
        .values_list("subscription__name", "n")[:5]
    )
    names = ", ".join(f"{name} ({n})" for name, n in busiest)
    wrong = {
        "hub": Wrong(
            f"More than {threshold} deliveries are waiting: {names}.",
            {"threshold": threshold, "busiest": dict(busiest)},
        )
    }
    return settle(AlertKind.BACKLOG_HIGH, wrong, now)
