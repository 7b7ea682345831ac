"""/metrics: Prometheus's text format, from the database, right for any number of processes.

Counters and histograms are counted in memory by each process and added to MetricTotal rows
every HUB_METRICS_FLUSH_SECONDS (receivers/metrics.py); gauges are read from the database at
scrape time with indexed queries. prometheus_client renders both through one custom collector.
docs/operations.md lists every metric and says why this design.
"""

from __future__ import annotations

import hmac
import json
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

import receivers.refusals  # noqa: F401 - declares the refusal metrics in FAMILIES
import subscriptions.metrics  # noqa: F401 - declares the delivery metrics in FAMILIES
from receivers import activity
from receivers import metrics as recorded
from receivers.models import Event, EventStatus
from subscriptions.models import (
    OPEN_STATUSES,
    Alert,
    AlertKind,
    Delivery,
    DeliveryStatus,
    Subscription,
)

from .models import MetricTotal

UPSERT_SQL = (
    "INSERT INTO {table} (metric, labels, part, value) VALUES {rows}"
    " ON CONFLICT (metric, labels, part) DO UPDATE SET value = {table}.value + EXCLUDED.value"
)
WAITING = (*OPEN_STATUSES, DeliveryStatus.SENDING)


def add_to_database(amounts: dict[recorded.Key, float]) -> None:
    """One statement adds what a process counted to the totals (the flusher's sink)."""
    rows, params = [], []
    for (metric, labels, part), value in amounts.items():
        rows.append("(%s, %s, %s, %s)")
        params += [metric, json.dumps(labels), part, value]
    table = connection.ops.quote_name(MetricTotal._meta.db_table)
    statement = UPSERT_SQL.format(table=table, rows=", ".join(rows))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


def add_from_flusher(amounts: dict[recorded.Key, float]) -> None:
    """add_to_database for the flusher thread, which no request's end tidies up after: a
    broken or expired connection is dropped here, and the next flush opens a new one."""
    try:
        add_to_database(amounts)
    finally:
        connection.close_if_unusable_or_obsolete()


def flush() -> None:
    """Store what this process counted, now (tests; the flusher does it in the background)."""
    amounts = recorded.take()
    if amounts:
        add_to_database(amounts)


class DatabaseCollector:
    """Counters and histograms from MetricTotal, gauges straight from the hub's tables."""

    def describe(self) -> list:
        return []  # families depend on the data: registering must not run the queries

    def collect(self) -> Iterator[Metric]:
        yield from totals()
        yield from gauges()


def totals() -> Iterator[Metric]:
    rows: dict[str, dict[tuple, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for metric, labels, part, value in MetricTotal.objects.values_list(
        "metric", "labels", "part", "value"
    ):
        rows[metric][tuple(json.loads(labels))][part] = value
    for name, family in recorded.FAMILIES.items():
        if isinstance(family, recorded.Counter):
            counter = CounterMetricFamily(name, family.documentation, labels=family.labels)
            for labels, parts in sorted(rows[name].items()):
                counter.add_metric(list(labels), parts.get("", 0.0))
            yield counter
            continue
        histogram = HistogramMetricFamily(name, family.documentation, labels=family.labels)
        for labels, parts in sorted(rows[name].items()):
            cumulative, buckets = 0.0, []
            for bound in family.parts:
                cumulative += parts.get(bound, 0.0)
                buckets.append((bound, cumulative))
            histogram.add_metric(list(labels), buckets, parts.get("sum", 0.0))
        yield histogram


def gauges() -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "hub_deliveries_waiting",
        "Deliveries not yet delivered nor failed (pending, sending or waiting to retry).",
        labels=["subscription"],
    )
    counts = (
        Delivery.objects.filter(status__in=WAITING)
        .values_list("subscription_id")
        .annotate(n=Count("pk"))
        .order_by("subscription_id")
    )
    for sub_id, n in counts:
        waiting.add_metric([str(sub_id)], n)
    yield waiting

    states = GaugeMetricFamily(
        "hub_subscriptions", "Subscriptions by state: active, paused or disabled.", labels=["state"]
    )
    by_state = dict.fromkeys(("active", "paused", "disabled"), 0)
    for is_active, is_paused, n in (
        Subscription.objects.values_list("is_active", "is_paused")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        by_state["disabled" if not is_active else "paused" if is_paused else "active"] += n
    for state, n in by_state.items():
        states.add_metric([state], n)
    yield states

    yield from watch_gauges()

    oldest = oldest_undelivered()
    yield GaugeMetricFamily(
        "hub_oldest_undelivered_event_age_seconds",
        "Age of the oldest event still waiting for its fan-out or for a delivery to an active, "
        "unpaused subscription (0 when none is).",
        value=0.0 if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds()),
    )


def watch_gauges() -> Iterator[Metric]:
    """Silent sources and open alerts: what the alerts' conditions say now."""
    now = timezone.now()
    silent = GaugeMetricFamily(
        "hub_source_silent",
        "1 when a source with an expected interval has received nothing for that long, else 0.",
        labels=["source"],
    )
    for source, last_event_at in activity.watched(now):
        flagged = activity.silent_since(source, last_event_at, now) is not None
        silent.add_metric([source.slug], 1.0 if flagged else 0.0)
    yield silent
    alerts = GaugeMetricFamily("hub_alerts_open", "Alerts open now, by kind.", labels=["kind"])
    counts = dict(
        Alert.objects.filter(cleared_at=None).values_list("kind").annotate(n=Count("pk")).order_by()
    )
    for kind in AlertKind.values:
        if kind != AlertKind.SUBSCRIPTION_RECOVERED:  # a notice, never open
            alerts.add_metric([kind], counts.get(kind, 0))
    yield alerts


def oldest_undelivered():
    """When the oldest undelivered event arrived: a few index probes, whatever the backlog."""
    candidates = list(
        Event.objects.filter(status=EventStatus.PENDING, is_test=False)
        .order_by("received_at")
        .values_list("received_at", flat=True)[:1]
    )
    live = Subscription.objects.filter(is_active=True, is_paused=False).values_list("pk", flat=True)
    for sub_id in live:
        for status in WAITING:
            # delivery_sub_status_idx: the lowest id of a status is its oldest delivery.
            first = (
                Delivery.objects.filter(subscription_id=sub_id, status=status)
                .order_by("pk")
                .values_list("event__received_at", flat=True)[:1]
            )
            candidates += list(first)
    return min(candidates, default=None)


def authorized(request: HttpRequest) -> bool:
    token = settings.HUB_METRICS_TOKEN
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        response = HttpResponse(b"", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
