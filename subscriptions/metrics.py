"""What delivering is counted and logged as (receivers/metrics.py keeps the counts)."""

from __future__ import annotations

import logging

from receivers.metrics import Counter, Histogram

from .models import Attempt, Delivery, DeliveryStatus, Subscription

attempts = Counter(
    "hub_delivery_attempts",
    "Delivery attempts by subscription and outcome: success, retry, failed (a permanent "
    "refusal by the target), expired (no retry left) or refused_target (the URL is not allowed).",
    ["subscription", "outcome"],
)
attempt_seconds = Histogram(
    "hub_delivery_attempt_duration_seconds",
    "How long a delivery attempt's HTTP request took, by subscription.",
    ["subscription"],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
)
delivered_seconds = Histogram(
    "hub_receive_to_delivered_seconds",
    "From the event's arrival at the hub to its successful delivery, by subscription.",
    ["subscription"],
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 86400],
)

unsent = Counter(
    "hub_deliveries_unsent",
    "Deliveries ended without an attempt, by subscription and outcome: expired (the event "
    "outlived the subscription's expire_after) or superseded (a newer event with the same "
    "coalescing key replaced it).",
    ["subscription", "outcome"],
)

logger = logging.getLogger("subscriptions.delivery")
LEVELS = {"success": logging.DEBUG, "retry": logging.INFO}

# The prefix send_batch gives the error of an attempt refused before it was sent.
REFUSED = "refused:"
# Answers that would have been retried had a retry been left (services.Result.transient).
TRANSIENT_CODES = {408, 429}


def outcome(delivery: Delivery, attempt: Attempt) -> str:
    if delivery.status == DeliveryStatus.SUCCEEDED:
        return "success"
    if delivery.status != DeliveryStatus.FAILED:
        return "retry"
    if attempt.error.startswith(REFUSED):
        return "refused_target"
    code = attempt.status_code
    if code is None or code in TRANSIENT_CODES or 500 <= code < 600:
        return "expired"
    return "failed"


def report_batch(sub: Subscription, done: list[Delivery], made: list[Attempt]) -> None:
    """Count and log a recorded batch: each delivery with its one attempt (services.record)."""
    label = str(sub.pk)
    for delivery, attempt in zip(done, made, strict=True):
        result = outcome(delivery, attempt)
        attempts.inc(label, result)
        logger.log(
            LEVELS.get(result, logging.WARNING),
            "delivery %s of event %s to subscription %s: %s (%s)",
            delivery.pk,
            delivery.event_id,
            sub.pk,
            result,
            attempt.error or attempt.status_code,
            extra={
                "event_id": delivery.event_id,
                "source": delivery.event.source.slug,
                "subscription": sub.pk,
                "delivery_id": delivery.pk,
            },
        )
        if attempt.error.startswith(REFUSED):
            continue
        attempt_seconds.observe(attempt.duration_ms / 1000, label)
        if delivery.delivered_at is not None and delivery.status == DeliveryStatus.SUCCEEDED:
            waited = (delivery.delivered_at - delivery.event.received_at).total_seconds()
            delivered_seconds.observe(max(waited, 0.0), label)


def report_unsent(subscription_id: int, outcome: str, count: int) -> None:
    """Count and log deliveries that ended unsent, as one line per statement that ended them."""
    unsent.add(count, str(subscription_id), outcome)
    logger.info(
        "%d deliveries to subscription %s ended unsent: %s",
        count,
        subscription_id,
        outcome,
        extra={"subscription": subscription_id},
    )
