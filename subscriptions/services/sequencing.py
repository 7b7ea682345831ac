"""Which deliveries a drain may take when its subscription sets ordering, coalescing or expiry
(subscriptions/options.py). A plain subscription never comes here: its claim is drain.py's.

Before each claim, deliveries whose event is too old end as `expired` and the older of the
waiting deliveries with one coalescing key end as `superseded`. Then, per ordering key, the
deliveries wait behind any earlier one that is still unfinished and not due (waiting for a
retry, or being sent by a drain that may have died): a failing delivery holds back its own key
only, and once it ends the rest of its key goes on. The drain sends what it took in received
order and holds back the rest of a key whose delivery failed (drain.send_batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Max, Q, QuerySet

from .. import metrics
from ..models import OPEN_STATUSES, Delivery, DeliveryStatus, Subscription


def applies(sub: Subscription) -> bool:
    return bool(sub.ordering_key or sub.coalesce or expires(sub))


def expires(sub: Subscription) -> bool:
    return bool(sub.expire_after or sub.expire_after_by_type)


def in_event_order(sub: Subscription) -> bool:
    return bool(sub.ordering_key or sub.coalesce)


def claim_order(sub: Subscription) -> tuple[str, ...]:
    """Received order where it matters (the event's id), else drain.py's order of due time."""
    return ("event_id", "pk") if in_event_order(sub) else ("next_attempt_at", "pk")


def waiting(sub: Subscription, now: datetime) -> QuerySet[Delivery]:
    return Delivery.objects.filter(
        subscription=sub, status__in=OPEN_STATUSES, next_attempt_at__lte=now
    )


def held_keys(sub: Subscription, now: datetime) -> QuerySet[Delivery]:
    """Ordering keys with an unfinished delivery that cannot go now: its key waits for it."""
    return (
        Delivery.objects.filter(subscription=sub)
        .exclude(order_key="")
        .filter(
            Q(status=DeliveryStatus.SENDING) | Q(status__in=OPEN_STATUSES, next_attempt_at__gt=now)
        )
        .values("order_key")
    )


def claimable(sub: Subscription, now: datetime) -> QuerySet[Delivery]:
    """The subscription's deliveries that may be sent now, in the order they must go."""
    due = waiting(sub, now).filter(subscription__is_active=True, subscription__is_paused=False)
    if sub.ordering_key:
        # Uncorrelated: the database reads the held keys once per claim, not once per row.
        due = due.exclude(order_key__in=held_keys(sub, now))
    return due.order_by(*claim_order(sub))


def due(sub: Subscription, now: datetime, limit: int) -> QuerySet[Delivery]:
    """drain.claim_due's choice for this subscription: ends what expired or was superseded,
    then returns the primary keys of up to `limit` deliveries to claim."""
    if expires(sub):
        expire_overdue(sub.pk, now)
    if sub.coalesce:
        # The keys of the next due deliveries, held ones included: a newer state supersedes
        # an older one waiting for a retry, which then no longer holds its ordering key.
        candidates = waiting(sub, now).exclude(coalesce_key="").order_by("event_id", "pk")
        keys = candidates.values_list("coalesce_key", flat=True)[:limit]
        supersede_older(sub, set(keys))
    return claimable(sub, now).values("pk")[:limit]


def has_due(sub: Subscription, now: datetime) -> bool:
    """selectors.has_due for this subscription: held deliveries are not due."""
    not_backing_off = Q(subscription__backoff_until__isnull=True) | Q(
        subscription__backoff_until__lte=now
    )
    return claimable(sub, now).filter(not_backing_off).exists()


def expire_overdue(subscription_id: int, now: datetime) -> int:
    """Waiting deliveries whose event outlived the subscription's expiry end unsent."""
    count = Delivery.objects.filter(
        subscription_id=subscription_id, status__in=OPEN_STATUSES, expires_at__lte=now
    ).update(status=DeliveryStatus.EXPIRED, claimed_until=None)
    report(subscription_id, DeliveryStatus.EXPIRED, count)
    return count


def expire_everywhere(now: datetime) -> int:
    """The sweep's part: a delivery waiting for a retry expires on time too, and so no longer
    holds back its ordering key."""
    overdue = Delivery.objects.filter(status__in=OPEN_STATUSES, expires_at__lte=now)
    subscription_ids = set(overdue.values_list("subscription_id", flat=True).distinct())
    return sum(expire_overdue(sub_id, now) for sub_id in subscription_ids)


def supersede_older(sub: Subscription, keys: Iterable[str]) -> int:
    """Of these coalescing keys, each waiting delivery with a newer one of its key ends."""
    keys = list(keys)
    if not keys:
        return 0
    # Of this subscription each event has one delivery, so a key's newest delivery is the one
    # of its newest event. Uncorrelated, and on the partial index: one plan whatever the stats.
    of_keys = Delivery.objects.filter(subscription=sub, coalesce_key__in=keys).exclude(
        coalesce_key=""
    )
    newest = of_keys.order_by().values("coalesce_key").annotate(last=Max("event_id"))
    count = (
        of_keys.filter(status__in=OPEN_STATUSES)
        .exclude(event_id__in=newest.values("last"))
        .update(status=DeliveryStatus.SUPERSEDED, claimed_until=None)
    )
    report(sub.pk, DeliveryStatus.SUPERSEDED, count)
    return count


def end_unsent(sub: Subscription, deliveries: list[Delivery], status: str) -> None:
    """Claimed deliveries that a drain decided not to send (their event expired meanwhile)."""
    if not deliveries:
        return
    count = Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING
    ).update(status=status, claimed_until=None)
    report(sub.pk, status, count)


def report(subscription_id: int, status: str, count: int) -> None:
    if count:
        metrics.report_unsent(subscription_id, status, count)
