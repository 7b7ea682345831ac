"""The admin dashboard: events per hour per source, subscription health, the oldest waiting event.

Server-rendered SVG bars, no script and no network. Registered in hub/urls.py before the admin's
own URLs, behind the admin's login.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from receivers import activity
from receivers.models import Event, EventStatus, RefusalReason, Source
from subscriptions.models import (
    OPEN_STATUSES,
    Alert,
    Attempt,
    Delivery,
    DeliveryStatus,
    Subscription,
)
from subscriptions.states import State, state_of

BACKLOG_STATUSES = (*OPEN_STATUSES, DeliveryStatus.SENDING)
BIG_EVENT_COLUMNS = ("event__raw_body", "event__payload", "event__headers")
PALETTE = (
    "#417690",
    "#e8a33d",
    "#5aa469",
    "#c8553d",
    "#8e6fb5",
    "#3d9ec8",
    "#b5a04a",
    "#d46a9a",
    "#6b7a8f",
    "#2f9c8f",
)
OTHER_COLOR = "#9aa5b1"
MAX_SERIES = len(PALETTE)
MAX_SUBSCRIPTIONS = 200
MAX_SOURCES = 200
MAX_ALERTS = 50
HOUR_CACHE_SECONDS = 3600
CHART_WIDTH = 960
CHART_HEIGHT = 180
LEFT = 44
BOTTOM = 22
TOP = 8


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Chart:
    title: str
    total: int
    peak: int
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_labels: list[tuple[float, str]] = field(default_factory=list)
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = LEFT
    baseline: float = CHART_HEIGHT - BOTTOM


@dataclass
class Series:
    name: str
    color: str
    last_day: int = 0
    last_week: int = 0


def count_per_hour(since: datetime, until: datetime | None = None) -> dict:
    events = Event.objects.filter(received_at__gte=since)
    if until is not None:
        events = events.filter(received_at__lt=until)
    rows = (
        events.annotate(hour=TruncHour("received_at"))
        .values("hour", "source_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(row["hour"], row["source_id"]): row["n"] for row in rows}


def hourly_counts(since: datetime, current_hour: datetime) -> dict[tuple[datetime, int], int]:
    """Events per (hour, source) since `since`.

    Counting a week means reading every event of the week (a second on a million rows), but
    a finished hour never changes: those counts are cached until the next hour starts, and
    only the current hour is counted on every view.
    """
    key = f"hub:dashboard:hours:{since:%Y%m%d%H}:{current_hour:%Y%m%d%H}"
    finished = cache.get(key)
    if finished is None:
        finished = count_per_hour(since, current_hour)
        cache.set(key, finished, timeout=HOUR_CACHE_SECONDS)
    return {**finished, **count_per_hour(current_hour)}


def series_by_source(counts: dict[tuple[datetime, int], int], day_start: datetime) -> dict:
    """One colour per source, the busiest first; the rest share one grey series."""
    week: dict[int, int] = defaultdict(int)
    day: dict[int, int] = defaultdict(int)
    for (hour, source_id), n in counts.items():
        week[source_id] += n
        if hour >= day_start:
            day[source_id] += n
    names = dict(Source.objects.filter(pk__in=week).values_list("pk", "slug"))
    ranked = sorted(week, key=lambda pk: (-week[pk], names.get(pk, "")))
    series: dict[int, Series] = {}
    other = Series("other sources", OTHER_COLOR)
    for index, source_id in enumerate(ranked):
        if index < MAX_SERIES:
            series[source_id] = Series(names.get(source_id, str(source_id)), PALETTE[index])
        else:
            series[source_id] = other
        series[source_id].last_day += day[source_id]
        series[source_id].last_week += week[source_id]
    return series


def build_chart(
    title: str,
    hours: list[datetime],
    counts: dict[tuple[datetime, int], int],
    series: dict[int, Series],
    label_every: int,
    label_format: str,
) -> Chart:
    per_hour: dict[datetime, list[tuple[Series, int]]] = defaultdict(list)
    for (hour, source_id), n in counts.items():
        per_hour[hour].append((series[source_id], n))
    totals = {hour: sum(n for _, n in per_hour[hour]) for hour in hours}
    peak = max(totals.values(), default=0)
    chart = Chart(title=title, total=sum(totals.values()), peak=peak)
    plot_height = CHART_HEIGHT - BOTTOM - TOP
    slot = (CHART_WIDTH - LEFT) / len(hours)
    gap = 1 if slot > 3 else 0
    scale = plot_height / peak if peak else 0
    for index, hour in enumerate(hours):
        x = LEFT + index * slot
        y = chart.baseline
        for serie, n in sorted(per_hour[hour], key=lambda item: item[0].name):
            height = n * scale
            y -= height
            end = hour + timedelta(hours=1)
            chart.bars.append(
                Bar(
                    round(x, 2),
                    round(y, 2),
                    round(slot - gap, 2),
                    round(height, 2),
                    serie.color,
                    f"{hour:%a %d %b %H:%M}–{end:%H:%M} UTC · {serie.name}: {n}",
                )
            )
        if index % label_every == 0:
            chart.x_labels.append((round(x, 2), f"{hour:{label_format}}"))
    for fraction in (0, 0.5, 1):
        value = round(peak * fraction)
        chart.y_labels.append((round(chart.baseline - value * scale, 2), str(value)))
    return chart


def charts(now: datetime) -> tuple[list[Chart], list[Series]]:
    current = now.replace(minute=0, second=0, microsecond=0)
    week_hours = [current - timedelta(hours=h) for h in range(24 * 7 - 1, -1, -1)]
    day_hours = week_hours[-24:]
    counts = hourly_counts(week_hours[0], current)
    series = series_by_source(counts, day_hours[0])
    day_counts = {key: n for key, n in counts.items() if key[0] >= day_hours[0]}
    result = [
        build_chart("Last 24 hours, per hour", day_hours, day_counts, series, 3, "%H:00"),
        build_chart("Last 7 days, per hour", week_hours, counts, series, 24, "%a %d %b"),
    ]
    legend = list({id(s): s for s in series.values()}.values())
    return result, legend


@dataclass
class SubscriptionHealth:
    subscription: Subscription
    attempts: int
    failed_attempts: int
    backlog: int
    failed: int
    oldest_waiting: datetime | None

    @property
    def state(self) -> State:
        return state_of(self.subscription)

    @property
    def failure_rate(self) -> float | None:
        return 100 * self.failed_attempts / self.attempts if self.attempts else None


def subscription_health(now: datetime) -> list[SubscriptionHealth]:
    unsuccessful = Q(status_code__isnull=True) | Q(status_code__lt=200) | Q(status_code__gte=300)
    attempts = {
        row["delivery__subscription_id"]: row
        for row in Attempt.objects.filter(started_at__gte=now - timedelta(hours=24))
        .values("delivery__subscription_id")
        .annotate(total=Count("pk"), failed=Count("pk", filter=unsuccessful))
        .order_by()
    }
    waiting = {
        row["subscription_id"]: row
        for row in Delivery.objects.filter(status__in=BACKLOG_STATUSES)
        .values("subscription_id")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        .order_by()
    }
    failed = dict(
        Delivery.objects.filter(status=DeliveryStatus.FAILED)
        .values("subscription_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("subscription_id", "n")
    )
    rows = []
    for sub in Subscription.objects.order_by("name", "pk")[:MAX_SUBSCRIPTIONS]:
        tried = attempts.get(sub.pk, {})
        open_ = waiting.get(sub.pk, {})
        rows.append(
            SubscriptionHealth(
                subscription=sub,
                attempts=tried.get("total", 0),
                failed_attempts=tried.get("failed", 0),
                backlog=open_.get("n", 0),
                failed=failed.get(sub.pk, 0),
                oldest_waiting=open_.get("oldest"),
            )
        )
    return rows


def oldest_undelivered() -> Delivery | None:
    """The open delivery whose event arrived first: one indexed probe per open status."""
    candidates = [
        Delivery.objects.filter(status=status)
        .select_related("event__source", "subscription")
        .defer(*BIG_EVENT_COLUMNS)
        .order_by("created_at", "pk")
        .first()
        for status in BACKLOG_STATUSES
    ]
    found = [d for d in candidates if d is not None]
    return min(found, key=lambda d: d.event.received_at, default=None)


def oldest_pending_event() -> Event | None:
    """An event stored but not yet fanned out: the sweep should pick it up within seconds."""
    return (
        Event.objects.filter(status=EventStatus.PENDING)
        .select_related("source")
        .defer("raw_body", "payload", "headers")
        .order_by("received_at", "pk")
        .first()
    )


@dataclass
class SourceActivity:
    source: Source | None  # None: requests to no known source
    accepted: int
    refused: int
    last_refusal_at: datetime | None = None
    last_refusal_reason: str = ""
    silent_since: datetime | None = None
    note: str = ""


def source_activity(now: datetime) -> list[SourceActivity]:
    """Per source, the last 24 hours: events accepted next to requests refused; the last
    refusal, and whether it fell silent."""
    current = now.replace(minute=0, second=0, microsecond=0)
    accepted: dict[int, int] = defaultdict(int)
    for (_hour, source_id), n in hourly_counts(current - timedelta(hours=23), current).items():
        accepted[source_id] += n
    refused = activity.refused_per_source(now - activity.DAY)
    rows = []
    sources = activity.with_activity(Source.objects.order_by("slug"), now)[:MAX_SOURCES]
    for source in sources:
        since = activity.silent_since(source, source.last_event_at, now)
        rows.append(
            SourceActivity(
                source,
                accepted[source.pk],
                refused.get(source.pk, 0),
                source.last_refusal_at,
                RefusalReason(source.last_refusal_reason).label if source.last_refusal_at else "",
                since,
                activity.Silence(source, since).note if since else "",
            )
        )
    if refused.get(None):
        rows.append(SourceActivity(None, 0, refused[None]))
    return rows


def open_alerts() -> list[Alert]:
    return list(
        Alert.objects.filter(cleared_at=None)
        .select_related("subscription", "source")
        .order_by("-opened_at")[:MAX_ALERTS]
    )


def dashboard(request: HttpRequest) -> TemplateResponse:
    if not request.user.has_perm("receivers.view_event"):
        raise PermissionDenied
    now = timezone.now()
    chart_list, legend = charts(now)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "charts": chart_list,
        "legend": legend,
        "subscriptions": subscription_health(now),
        "sources": source_activity(now),
        "alerts": open_alerts(),
        "oldest_delivery": oldest_undelivered(),
        "oldest_pending": oldest_pending_event(),
    }
    return TemplateResponse(request, "admin/hub/dashboard.html", context)


urlpatterns = [path("", admin.site.admin_view(dashboard), name="hub-dashboard")]
