"""Relaying stored events to subscribers: fan-out, delivery, retries, replays and the sweep.

The database is the source of truth and the broker only carries work:
- an event is `pending` until a fan-out transaction has created its Delivery rows;
- a delivery is claimed by a conditional UPDATE and leased for a bounded time, so a worker
  that dies mid-delivery leaves a lease that expires, and the sweep hands the delivery out again;
- one drainer at a time owns a subscription (a lease on the Subscription row) and sends its
  due deliveries over one keep-alive connection; a subscriber that hangs holds one worker
  thread up to its timeout, and its backoff stops it from taking more.
Any lost broker message is made good by `sweep`, which beat runs every HUB_SWEEP_SECONDS.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from receivers.models import Event, EventStatus

from . import metrics
from .models import (
    MAX_TIMEOUT_SECONDS,
    OPEN_STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    PayloadFormat,
    Subscription,
)
from .payloads import render
from .sender import Sender
from .sender import Timeout as SendTimeout
from .signing import signature_headers
from .targets import TargetRefused, check_target

logger = logging.getLogger(__name__)

# Seconds to wait before each further attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h. Ten attempts in all, spread over about three days.
RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_RETRY_AFTER = 86400
BATCH = 50
DRAIN_SECONDS = 20
PENDING_GRACE = timedelta(seconds=2)
TRANSIENT_CODES = {408, 429}
USER_AGENT = "hub-webhooks/1.0"


# Fan-out ------------------------------------------------------------------------------------


def active_subscriptions() -> list[tuple[Subscription, set[int]]]:
    subscriptions = Subscription.objects.filter(is_active=True).prefetch_related("sources")
    return [(sub, {source.pk for source in sub.sources.all()}) for sub in subscriptions]


def matching(event: Event, subscriptions: list[tuple[Subscription, set[int]]]) -> list[int]:
    return [
        sub.pk
        for sub, source_ids in subscriptions
        if (not source_ids or event.source_id in source_ids) and sub.matches(event.type)
    ]


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def fan_out(event_ids: Iterable[int]) -> int:
    """Create the deliveries of pending events, in one transaction; returns how many."""
    ids = list(event_ids)
    if not ids:
        return 0
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=EventStatus.PENDING)
            .only("pk", "source_id", "type", "is_test")
            .order_by("pk")
        )
        if not events:
            return 0
        subscriptions = active_subscriptions()
        pairs, relayed, ignored, targets = [], [], [], set()
        for event in events:
            sub_ids = [] if event.is_test else matching(event, subscriptions)
            (relayed if sub_ids else ignored).append(event.pk)
            targets.update(sub_ids)
            pairs += [(event.pk, sub_id) for sub_id in sub_ids]
        insert_deliveries(pairs)
        Event.objects.filter(pk__in=relayed).update(status=EventStatus.DISPATCHED)
        Event.objects.filter(pk__in=ignored).update(status=EventStatus.IGNORED)
        transaction.on_commit(lambda: wake(targets))
    return len(pairs)


# Columns a fan-out sets per delivery; every other column takes its field's default.
PER_DELIVERY = ("event", "subscription", "webhook_id")
INSERT_DELIVERIES_SQL = (
    "INSERT INTO {table} ({columns}) SELECT {values} FROM"
    " unnest(%s::bigint[], %s::bigint[], %s::text[]) AS new (event_id, subscription_id, webhook_id)"
    " ON CONFLICT DO NOTHING"
)


def insert_deliveries(pairs: list[tuple[int, int]]) -> None:
    """One Delivery per (event id, subscription id), skipping pairs that already have one.

    On PostgreSQL one statement takes the ids as three arrays: building a model instance and
    preparing a dozen values per delivery (bulk_create) was the largest part of a fan-out.
    """
    if not pairs:
        return
    webhook_ids = [new_webhook_id() for _ in pairs]
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [
                Delivery(event_id=event_id, subscription_id=sub_id, webhook_id=webhook_id)
                for (event_id, sub_id), webhook_id in zip(pairs, webhook_ids, strict=True)
            ],
            ignore_conflicts=True,
        )
        return
    quote = connection.ops.quote_name
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns, values, params = [], [], []
    for field in fields:
        columns.append(quote(field.column))
        if field.name in PER_DELIVERY:
            values.append(f"new.{field.column}")
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    statement = INSERT_DELIVERIES_SQL.format(
        table=quote(Delivery._meta.db_table), columns=", ".join(columns), values=", ".join(values)
    )
    event_ids = [event_id for event_id, _ in pairs]
    sub_ids = [sub_id for _, sub_id in pairs]
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, event_ids, sub_ids, webhook_ids])


FAN_OUT_CHUNK = 500


def fan_out_pending() -> int:
    """Fan out every pending event, oldest first, a chunk per transaction."""
    made, previous = 0, None
    while True:
        ids = list(
            Event.objects.filter(status=EventStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:FAN_OUT_CHUNK]
        )
        if not ids or ids == previous:
            # None left, or another fan-out holds these rows: it finishes them.
            return made
        made += fan_out(ids)
        if len(ids) < FAN_OUT_CHUNK:
            return made
        previous = ids


def wake(subscription_ids: Iterable[int]) -> None:
    """Request drains for the subscriptions that no drainer holds right now.

    Read after the deliveries were committed, this is race-free: a drainer that still holds
    its lease checks for due deliveries after releasing it, and so sees the new ones. A drain
    waiting for work in this process is told at once.
    """
    ids = set(subscription_ids)
    if not ids:
        return
    new_work.announce(ids)
    busy = set(
        Subscription.objects.filter(pk__in=ids, lease_until__gt=timezone.now()).values_list(
            "pk", flat=True
        )
    )
    request_drains(ids - busy)


def request_drains(subscription_ids: Iterable[int]) -> None:
    from .tasks import drain_subscription_task

    for sub_id in subscription_ids:
        try:
            drain_subscription_task.apply_async(args=[sub_id], retry=False)
        except Exception as exc:  # noqa: BLE001 - the sweep requests it again
            logger.warning(
                "could not request a drain of subscription %s: %s",
                sub_id,
                exc,
                extra={"subscription": sub_id},
            )
            return


# Delivery -----------------------------------------------------------------------------------


@dataclass
class Result:
    status_code: int | None
    duration_ms: int
    excerpt: str
    error: str
    retry_after: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def network_failure(self) -> bool:
        return self.status_code is None

    @property
    def transient(self) -> bool:
        code = self.status_code
        return code is None or code in TRANSIENT_CODES or 500 <= code < 600


def claim_subscription(subscription_id: int, now: datetime) -> Subscription | None:
    """One UPDATE decides who drains; most refused drains cost nothing more than that.

    The lease covers the longest allowed timeout here; claim_due renews it per batch with
    the subscription's own timeout.
    """
    lease = now + timedelta(seconds=MAX_TIMEOUT_SECONDS + settings.HUB_LEASE_MARGIN_SECONDS)
    claimed = (
        Subscription.objects.filter(pk=subscription_id, is_active=True, is_paused=False)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
        .update(lease_until=lease)
    )
    return Subscription.objects.get(pk=subscription_id) if claimed == 1 else None


def release_subscription(subscription_id: int) -> None:
    Subscription.objects.filter(pk=subscription_id).update(lease_until=None)


def lease_for(sub: Subscription, now: datetime) -> datetime:
    """Until when a drainer may hold this subscription's deliveries without news of it."""
    return now + timedelta(seconds=sub.timeout_seconds + settings.HUB_LEASE_MARGIN_SECONDS)


def claim_due(sub: Subscription, now: datetime, limit: int = BATCH) -> list[Delivery]:
    due = (
        Delivery.objects.filter(
            subscription=sub, status__in=OPEN_STATUSES, next_attempt_at__lte=now
        )
        # A drain goes on for a while: pausing or disabling stops it at its next batch.
        .filter(subscription__is_active=True, subscription__is_paused=False)
        .order_by("next_attempt_at", "pk")
        .values("pk")[:limit]
    )
    lease = lease_for(sub, now)
    # One statement picks and claims. Only this drainer holds the subscription, so the rows
    # claimed with this exact lease are the ones it claimed.
    claimed = Delivery.objects.filter(pk__in=due, status__in=OPEN_STATUSES).update(
        status=DeliveryStatus.SENDING, claimed_until=lease
    )
    if not claimed:
        return []
    if sub.lease_until is None or sub.lease_until < lease:
        # The subscription's lease must outlast its deliveries' claims; most batches of a
        # drain fall within the lease that claim_subscription took.
        Subscription.objects.filter(pk=sub.pk).update(lease_until=lease)
        sub.lease_until = lease
    # Only what sending needs: the parsed payload only for CloudEvents, and no admin fields.
    # received_at is also what the receive-to-delivered latency is measured from.
    event_fields = ["event__raw_body", "event__headers", "event__type", "event__source__slug"]
    event_fields += ["event__received_at"]
    if sub.payload_format == PayloadFormat.CLOUDEVENTS:
        event_fields += ["event__payload", "event__external_id", "event__occurred_at"]
    return list(
        Delivery.objects.filter(
            subscription=sub, status=DeliveryStatus.SENDING, claimed_until=lease
        )
        .select_related("event", "event__source")
        .only(*DELIVERY_FIELDS, "webhook_id", "event_id", "subscription_id", *event_fields)
        .order_by("next_attempt_at", "pk")
    )


def build_request(delivery: Delivery, sub: Subscription, now: datetime) -> tuple[bytes, dict]:
    event = delivery.event
    body, content_type = render(event, sub, event.source.slug)
    headers = {str(k): str(v) for k, v in (sub.headers or {}).items()}
    headers.update(
        {
            "content-type": content_type,
            "user-agent": USER_AGENT,
            "x-hub-event-type": event.type,
            "x-hub-source": event.source.slug,
        }
    )
    headers.update(
        signature_headers(sub.signing_secrets(now), delivery.webhook_id, int(now.timestamp()), body)
    )
    return body, headers


def retry_after_seconds(value: str | None, now: datetime) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            seconds = int((parsedate_to_datetime(value) - now).total_seconds())
        except (TypeError, ValueError):
            return None
    return max(1, min(seconds, MAX_RETRY_AFTER))


_local = threading.local()


def http_client() -> Sender:
    """One sender per worker thread, kept for its life, so connections to a subscriber stay
    alive between deliveries."""
    client = getattr(_local, "client", None)
    if client is None:
        client = Sender()
        _local.client = client
    return client


def post(
    client: Sender,
    url: str,
    body: bytes,
    headers: dict,
    now: datetime,
    timeout: float = MAX_TIMEOUT_SECONDS,
) -> Result:
    started = time.perf_counter()
    try:
        answer = client.post(url, body, headers, timeout)
    except SendTimeout:
        return Result(None, elapsed_ms(started), "", "timed out")
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return Result(None, elapsed_ms(started), "", f"{exc.__class__.__name__}: {exc}"[:500])
    error = "redirects are not followed" if 300 <= answer.status < 400 else ""
    return Result(
        answer.status,
        elapsed_ms(started),
        answer.content.decode("utf-8", "replace"),
        error,
        retry_after_seconds(answer.retry_after, now),
    )


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def next_delay(attempt_count: int, result: Result) -> float | None:
    """Seconds until the next attempt, or None when there is none left (or none is due)."""
    if not result.transient or attempt_count >= len(RETRY_SCHEDULE):
        return None
    if result.retry_after is not None:
        return result.retry_after
    base = RETRY_SCHEDULE[attempt_count]
    # Jitter spreads the retries of many deliveries that failed together.
    return base * random.uniform(0.9, 1.1)


def apply_result(delivery: Delivery, result: Result, now: datetime) -> Attempt:
    delivery.attempt_count += 1
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error[:500]
    delivery.claimed_until = None
    attempt = Attempt(
        delivery=delivery,
        started_at=now,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        response_excerpt=result.excerpt,
        error=result.error[:500],
        is_replay=delivery.replay_requested,
    )
    delivery.replay_requested = False
    if result.succeeded:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = timezone.now()
        return attempt
    delay = next_delay(delivery.attempt_count, result)
    if delay is None:
        delivery.status = DeliveryStatus.FAILED
    else:
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    return attempt


DELIVERY_FIELDS = [
    "status",
    "attempt_count",
    "last_status_code",
    "last_error",
    "claimed_until",
    "next_attempt_at",
    "delivered_at",
    "replay_requested",
]


def save_outcomes(done: list[Delivery]) -> None:
    """One UPDATE per distinct outcome: a healthy batch is a single statement.

    (bulk_update's CASE per row and field cost more CPU than the HTTP requests themselves.)
    Deliveries in a group share their outcome to the letter, but for delivered_at, which
    takes the group's latest value (they were delivered within the same batch), and
    next_attempt_at, which only a retry changes.
    """
    groups: dict[tuple, list[Delivery]] = {}
    for delivery in done:
        fields = [f for f in DELIVERY_FIELDS if f != "delivered_at"]
        if delivery.status != DeliveryStatus.RETRYING:
            fields.remove("next_attempt_at")
        key = tuple((f, getattr(delivery, f)) for f in fields)
        groups.setdefault(key, []).append(delivery)
    for key, members in groups.items():
        values = dict(key)
        values["delivered_at"] = max(
            (d.delivered_at for d in members if d.delivered_at), default=None
        )
        Delivery.objects.filter(pk__in=[d.pk for d in members]).update(**values)


# A healthy subscription's last success is rewritten at most this often, not per batch.
HEALTH_WRITE_SECONDS = 1


def still_healthy(sub: Subscription, now: datetime) -> bool:
    return (
        sub.failing_since is None
        and sub.consecutive_failures == 0
        and sub.last_success_at is not None
        and now - sub.last_success_at < timedelta(seconds=HEALTH_WRITE_SECONDS)
    )


def record(sub: Subscription, done: list[Delivery], attempts: list[Attempt]) -> None:
    """Save a batch's outcome in one transaction, and the subscription's health with it."""
    if not done:
        return
    now = timezone.now()
    # One attempt per delivery in a batch: a delivery succeeded exactly when its attempt did.
    successes = [d for d in done if d.status == DeliveryStatus.SUCCEEDED]
    failures = [d for d in done if d.status != DeliveryStatus.SUCCEEDED]
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        save_outcomes(done)
        health: dict = {}
        if done[-1].status == DeliveryStatus.SUCCEEDED:
            if not still_healthy(sub, now):
                health = {
                    "last_success_at": now,
                    "failing_since": None,
                    "consecutive_failures": 0,
                }
        elif failures:
            health = {
                "last_failure_at": now,
                "consecutive_failures": sub.consecutive_failures + len(failures),
                "failing_since": sub.failing_since or now,
            }
            if successes:
                health["last_success_at"] = now
        if health:
            Subscription.objects.filter(pk=sub.pk).update(**health)
            for key, value in health.items():
                setattr(sub, key, value)
    metrics.report_batch(sub, done, attempts)
    if any(d.last_status_code == 410 for d in done):
        disable_subscription(sub.pk, "The target answered 410 Gone.")


def open_backoff(sub: Subscription) -> None:
    """After a timeout or connection error, wait before trying this target again."""
    seconds = min(300, 2 ** min(sub.consecutive_failures, 8))
    Subscription.objects.filter(pk=sub.pk).update(
        backoff_until=timezone.now() + timedelta(seconds=seconds)
    )


def unclaim(deliveries: Iterable[Delivery]) -> None:
    ids = [d.pk for d in deliveries]
    if ids:
        Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING).update(
            status=DeliveryStatus.PENDING, claimed_until=None
        )


def renew_claims(sub: Subscription, deliveries: list[Delivery], now: datetime) -> datetime:
    lease = lease_for(sub, now)
    Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING
    ).update(claimed_until=lease)
    Subscription.objects.filter(pk=sub.pk).update(lease_until=lease)
    sub.lease_until = lease
    return lease


def send_batch(client: Sender, sub: Subscription, batch: list[Delivery]) -> bool:
    """Send a claimed batch in order; False when the target looks down (stop draining)."""
    done: list[Delivery] = []
    attempts: list[Attempt] = []
    healthy = True
    try:
        check_target(sub.url)
    except TargetRefused as exc:
        refused = Result(None, 0, "", f"refused: {exc}")
        for delivery in batch:
            attempts.append(apply_result(delivery, refused, timezone.now()))
            delivery.status = DeliveryStatus.FAILED
            done.append(delivery)
        record(sub, done, attempts)
        return False
    lease_until = batch[0].claimed_until
    for index, delivery in enumerate(batch):
        now = timezone.now()
        if lease_until and now + timedelta(seconds=sub.timeout_seconds + 5) > lease_until:
            # A slow (not dead) subscriber: keep the claims (of the sent ones too: they are
            # recorded at the end of the batch) so the sweep hands none of them out again.
            lease_until = renew_claims(sub, batch, now)
        body, headers = build_request(delivery, sub, now)
        result = post(client, sub.url, body, headers, now, timeout=sub.timeout_seconds)
        attempts.append(apply_result(delivery, result, now))
        done.append(delivery)
        if result.network_failure or result.status_code == 410:
            healthy = False
            unclaim(batch[index + 1 :])
            break
    record(sub, done, attempts)
    if not healthy:
        open_backoff(sub)
    return healthy


# A waiting drain looks in the database this often for deliveries that a fan-out in another
# process made; those made in its own process wake it at once (NewWork).
IDLE_POLL_SECONDS = 0.025
# Drains that may wait for more work at the same time, per worker process: the others end
# at once, so waiting drains never take every worker thread.
_waiting = threading.BoundedSemaphore(max(1, settings.CELERY_WORKER_CONCURRENCY // 4))


class NewWork:
    """Fan-outs tell the drains waiting in the same process that their subscription has work."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.generation: dict[int, int] = {}

    def announce(self, subscription_ids: Iterable[int]) -> None:
        with self.condition:
            for sub_id in subscription_ids:
                self.generation[sub_id] = self.generation.get(sub_id, 0) + 1
            self.condition.notify_all()

    def seen(self, subscription_id: int) -> int:
        with self.condition:
            return self.generation.get(subscription_id, 0)

    def wait(self, subscription_id: int, seen: int, timeout: float) -> None:
        with self.condition:
            self.condition.wait_for(
                lambda: self.generation.get(subscription_id, 0) != seen, timeout
            )


new_work = NewWork()


def drain_subscription(subscription_id: int, max_seconds: float = DRAIN_SECONDS) -> int:
    """Deliver everything due for one subscription; returns how many attempts were made.

    Out of work, the drain keeps the subscription for HUB_DRAIN_IDLE_SECONDS and looks for
    more every IDLE_POLL_SECONDS: under a steady flow of events it goes on sending, instead
    of ending and waiting for the next fan-out to start a new drain through the broker.
    """
    now = timezone.now()
    sub = claim_subscription(subscription_id, now)
    if sub is None:
        return 0
    started, sent, more = time.monotonic(), 0, False
    client = http_client()
    waiting = False
    idle_limit = settings.HUB_DRAIN_IDLE_SECONDS
    try:
        last_work = time.monotonic()
        while True:
            if time.monotonic() - started > max_seconds:
                more = True
                break
            seen = new_work.seen(subscription_id)
            batch = claim_due(sub, timezone.now())
            sent += len(batch)
            if batch:
                if not send_batch(client, sub, batch):
                    break
                last_work = time.monotonic()
                if len(batch) == BATCH:
                    continue
            # Everything due was sent; has_due below sees what comes after the drain ends.
            if idle_limit <= 0 or time.monotonic() - last_work >= idle_limit:
                break
            if not waiting:
                waiting = _waiting.acquire(blocking=False)
                if not waiting:
                    break
            new_work.wait(subscription_id, seen, IDLE_POLL_SECONDS)
    finally:
        if waiting:
            _waiting.release()
        release_subscription(subscription_id)
    if more or has_due(subscription_id):
        # Another drain was refused while this one held the lease, or time ran out.
        request_drains([subscription_id])
    return sent


def due_deliveries(now: datetime) -> QuerySet[Delivery]:
    """Deliveries whose next attempt is due, to subscriptions that are neither off nor paused."""
    return Delivery.objects.filter(
        status__in=OPEN_STATUSES,
        next_attempt_at__lte=now,
        subscription__is_active=True,
        subscription__is_paused=False,
    )


def has_due(subscription_id: int) -> bool:
    return (
        due_deliveries(timezone.now())
        .filter(subscription_id=subscription_id)
        .filter(
            Q(subscription__backoff_until__isnull=True)
            | Q(subscription__backoff_until__lte=timezone.now())
        )
        .exists()
    )


def disable_subscription(subscription_id: int, reason: str) -> None:
    updated = Subscription.objects.filter(pk=subscription_id, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:300]
    )
    if updated:
        logger.warning(
            "subscription %s disabled: %s",
            subscription_id,
            reason,
            extra={"subscription": subscription_id},
        )


# Replays ------------------------------------------------------------------------------------


def replay_deliveries(delivery_ids: Iterable[int]) -> int:
    """Send deliveries again. Old attempts stay; the next attempt is marked as a replay."""
    ids = list(delivery_ids)
    count = 0
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        count += (
            Delivery.objects.filter(pk__in=chunk)
            .exclude(status=DeliveryStatus.SENDING)
            .update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=timezone.now(),
                replay_requested=True,
                claimed_until=None,
            )
        )
    subscription_ids = set(
        Delivery.objects.filter(pk__in=ids).values_list("subscription_id", flat=True).distinct()
    )
    wake(subscription_ids)
    return count


def replay_event(event: Event) -> int:
    """Replay every delivery of an event, and create those a new subscription now wants."""
    if event.is_test:
        return 0
    subscriptions = active_subscriptions()
    existing = set(event.deliveries.values_list("subscription_id", flat=True))
    missing = [sub_id for sub_id in matching(event, subscriptions) if sub_id not in existing]
    Delivery.objects.bulk_create(
        [
            Delivery(event=event, subscription_id=sub_id, webhook_id=new_webhook_id())
            for sub_id in missing
        ],
        ignore_conflicts=True,
    )
    if missing and event.status != EventStatus.DISPATCHED:
        Event.objects.filter(pk=event.pk).update(status=EventStatus.DISPATCHED)
    return replay_deliveries(event.deliveries.values_list("pk", flat=True))


def failed_delivery_ids(**filters) -> list[int]:
    return list(
        Delivery.objects.filter(status=DeliveryStatus.FAILED, **filters).values_list(
            "pk", flat=True
        )
    )


# Sweep --------------------------------------------------------------------------------------


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Find work whose broker message was lost or whose worker died, and hand it out again."""
    now = now or timezone.now()
    counts = {"stale_events": 0, "expired_claims": 0, "drains": 0, "disabled": 0}
    stale = list(
        Event.objects.filter(status=EventStatus.PENDING, received_at__lt=now - PENDING_GRACE)
        .order_by("received_at")
        .values_list("pk", flat=True)[:5000]
    )
    for start in range(0, len(stale), 500):
        counts["stale_events"] += len(stale[start : start + 500])
        fan_out(stale[start : start + 500])
    counts["expired_claims"] = Delivery.objects.filter(
        status=DeliveryStatus.SENDING, claimed_until__lt=now
    ).update(status=DeliveryStatus.PENDING, claimed_until=None)
    Subscription.objects.filter(lease_until__lt=now).update(lease_until=None)
    cutoff = now - timedelta(hours=settings.HUB_DISABLE_AFTER_HOURS)
    for sub_id in Subscription.objects.filter(is_active=True, failing_since__lt=cutoff).values_list(
        "pk", flat=True
    ):
        hours = settings.HUB_DISABLE_AFTER_HOURS
        disable_subscription(sub_id, f"Every delivery failed for more than {hours} hours.")
        counts["disabled"] += 1
    due = set(due_deliveries(now).values_list("subscription_id", flat=True).distinct())
    counts["drains"] = len(due)
    request_drains(due)
    if any(counts.values()):
        logger.info("sweep found work: %s", counts)
    return counts
