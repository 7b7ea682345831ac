"""What an attempt's answer means: the delivery's new state, its next try, the subscription's
health; and saving a batch of outcomes in one transaction."""

from __future__ import annotations

import functools
import logging
import random
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from receivers.storage import insert_cursor

from .. import metrics
from ..models import Attempt, Delivery, DeliveryStatus, Subscription
from ..sender import Result
from . import alerts

logger = logging.getLogger(__name__)

# Seconds to wait before each further attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h, 24 h. Ten attempts in all, spread over about three days.
RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


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
    """One UPDATE per distinct outcome: a healthy batch is a single statement (bulk_update
    would write a CASE per row and field).

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


# On PostgreSQL a batch's attempts and outcomes are one statement: the attempts inserted from
# arrays (unnest) in a CTE of the UPDATE that sets every delivery's outcome from arrays.
SAVE_BATCH_SQL = (
    "WITH attempts AS (INSERT INTO {attempt} ({attempt_columns}) SELECT * FROM unnest({arrays}))"
    " UPDATE {delivery} AS d SET {sets} FROM unnest(%s::bigint[], {outcomes}) AS o(id, {names})"
    " WHERE d.{pk} = o.id"
)


@functools.cache
def save_batch_statement() -> tuple[str, list, list]:
    """The statement, and the attribute names of an attempt and of a delivery it reads."""
    quote = connection.ops.quote_name
    attempt_fields = [f for f in Attempt._meta.concrete_fields if not f.primary_key]
    delivery_fields = [Delivery._meta.get_field(name) for name in DELIVERY_FIELDS]

    def arrays(fields):
        return ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)

    sql = SAVE_BATCH_SQL.format(
        attempt=quote(Attempt._meta.db_table),
        attempt_columns=", ".join(quote(f.column) for f in attempt_fields),
        arrays=arrays(attempt_fields),
        delivery=quote(Delivery._meta.db_table),
        sets=", ".join(
            f"{quote(f.column)} = COALESCE(o.{quote(f.column)}, d.{quote(f.column)})"
            if f.name == "next_attempt_at"
            else f"{quote(f.column)} = o.{quote(f.column)}"
            for f in delivery_fields
        ),
        outcomes=arrays(delivery_fields),
        names=", ".join(quote(f.column) for f in delivery_fields),
        pk=quote(Delivery._meta.pk.column),
    )
    return sql, [f.attname for f in attempt_fields], [f.attname for f in delivery_fields]


def save_batch(done: list[Delivery], attempts: list[Attempt]) -> None:
    """The batch's attempt rows and its deliveries' outcomes (one statement on PostgreSQL;
    elsewhere bulk_create and one UPDATE per distinct outcome)."""
    if connection.vendor != "postgresql":
        Attempt.objects.bulk_create(attempts)
        save_outcomes(done)
        return
    sql, attempt_names, delivery_names = save_batch_statement()
    params = [[getattr(a, name) for a in attempts] for name in attempt_names]
    params.append([d.pk for d in done])
    for name in delivery_names:
        if name == "next_attempt_at":
            # Only a retry moves the next attempt (as save_outcomes): null keeps the row's own.
            retrying = DeliveryStatus.RETRYING
            params.append([d.next_attempt_at if d.status == retrying else None for d in done])
        else:
            params.append([getattr(d, name) for d in done])
    # Bound on the server: the text never changes, so psycopg prepares it after a few uses.
    with insert_cursor(connection) as cursor:
        cursor.execute(sql, params)


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
    failures_before = sub.consecutive_failures
    # One attempt per delivery in a batch: a delivery succeeded exactly when its attempt did.
    successes = [d for d in done if d.status == DeliveryStatus.SUCCEEDED]
    failures = [d for d in done if d.status != DeliveryStatus.SUCCEEDED]
    with transaction.atomic():
        save_batch(done, attempts)
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
    alerts.after_batch(sub, failures_before, done)
    if any(d.last_status_code == 410 for d in done):
        disable_subscription(sub.pk, "The target answered 410 Gone.")


def open_backoff(sub: Subscription) -> None:
    """After a timeout or connection error, wait before trying this target again."""
    seconds = min(300, 2 ** min(sub.consecutive_failures, 8))
    Subscription.objects.filter(pk=sub.pk).update(
        backoff_until=timezone.now() + timedelta(seconds=seconds)
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
        alerts.subscription_disabled(subscription_id, reason)
