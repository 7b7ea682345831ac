"""Draining a subscription: one drainer at a time holds it (a lease on its row), claims its due
deliveries in batches by a conditional UPDATE, and sends them in order over one connection.

A worker that dies mid-delivery leaves leases that expire; the sweep hands the work out again.
A subscriber that hangs holds one worker thread up to its timeout, and its backoff stops it
from taking more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from operator import attrgetter

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from receivers.connections import drop_broken_connections

from .. import selectors, sender, work
from ..models import (
    OPEN_STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    PayloadFormat,
    Subscription,
)
from ..payloads import build_request
from ..sender import Result, Sender
from ..targets import TargetRefused, check_target
from . import claiming, sequencing
from .outcomes import DELIVERY_FIELDS, apply_result, open_backoff, record

logger = logging.getLogger(__name__)

BATCH = 50
DRAIN_SECONDS = 20


def lease_for(sub: Subscription, now: datetime) -> datetime:
    """Until when a drainer may hold this subscription and its deliveries without news of it:
    one that dies blocks them no longer than the subscription's own timeout plus the margin."""
    return now + timedelta(seconds=sub.timeout_seconds + settings.HUB_LEASE_MARGIN_SECONDS)


def lease_is_short(sub: Subscription, now: datetime) -> bool:
    """Whether the lease could end during a request to this subscriber (its timeout) plus
    half the margin: then it is renewed, so at most every half margin, not on every batch."""
    keep = timedelta(seconds=sub.timeout_seconds + settings.HUB_LEASE_MARGIN_SECONDS / 2)
    return sub.lease_until is None or sub.lease_until < now + keep


def claim_subscription(subscription_id: int, now: datetime) -> Subscription | None:
    """The subscription's timeout sets the lease; one conditional UPDATE decides who drains."""
    sub = Subscription.objects.filter(pk=subscription_id, is_active=True, is_paused=False).first()
    if sub is None:
        return None
    lease = lease_for(sub, now)
    claimed = (
        Subscription.objects.filter(pk=subscription_id, is_active=True, is_paused=False)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(backoff_until__isnull=True) | Q(backoff_until__lte=now))
        .update(lease_until=lease)
    )
    if claimed != 1:
        return None
    sub.lease_until = lease
    return sub


def renew_lease(sub: Subscription, now: datetime) -> None:
    """Keep the subscription while draining it, so that no other drainer takes it."""
    if lease_is_short(sub, now):
        lease = lease_for(sub, now)
        Subscription.objects.filter(pk=sub.pk).update(lease_until=lease)
        sub.lease_until = lease


# A failed release is tried again after this long, twice as long each time up to the most.
RELEASE_RETRY_SECONDS = 0.5
RELEASE_RETRY_MOST_SECONDS = 2.0


def release_subscription(sub: Subscription) -> None:
    """Give the subscription back (only the lease this drainer holds). A failed release is
    retried on a new connection until it succeeds or the lease has ended by itself: a lease
    left standing would block the subscription after the database is back."""
    wait = RELEASE_RETRY_SECONDS
    while True:
        try:
            Subscription.objects.filter(pk=sub.pk, lease_until=sub.lease_until).update(
                lease_until=None
            )
            return
        except DatabaseError as exc:
            drop_broken_connections()
            if (
                sub.lease_until is None
                or timezone.now() + timedelta(seconds=wait) >= sub.lease_until
            ):
                logger.warning(
                    "could not release subscription %s, its lease ends by itself: %s",
                    sub.pk,
                    exc,
                    extra={"subscription": sub.pk},
                )
                return
        time.sleep(wait)
        wait = min(2 * wait, RELEASE_RETRY_MOST_SECONDS)


def claim_due(sub: Subscription, now: datetime, limit: int = BATCH) -> list[Delivery]:
    if sequencing.applies(sub):
        due = sequencing.due(sub, now, limit)
    else:
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
    if connection.vendor == "postgresql":
        # One statement picks, claims and reads what sending needs.
        claimed = claiming.claim_and_read(sub, due, lease)
        claimed.sort(key=attrgetter(*sequencing.claim_order(sub)))
    else:
        claimed = claim_and_select(sub, due, lease)
    if claimed:
        renew_lease(sub, now)
    return claimed


def claim_and_select(sub: Subscription, due: QuerySet, lease: datetime) -> list[Delivery]:
    # One statement picks and claims. Only this drainer holds the subscription, so the rows
    # claimed with this exact lease are the ones it claimed.
    claimed = Delivery.objects.filter(pk__in=due, status__in=OPEN_STATUSES).update(
        status=DeliveryStatus.SENDING, claimed_until=lease
    )
    if not claimed:
        return []
    event_fields = [f"event__{name}" for name in claiming.EVENT_FIELDS if name != "source_id"]
    if sub.payload_format == PayloadFormat.CLOUDEVENTS:
        event_fields += [f"event__{name}" for name in claiming.CLOUDEVENT_FIELDS]
    return list(
        Delivery.objects.filter(
            subscription=sub, status=DeliveryStatus.SENDING, claimed_until=lease
        )
        .select_related("event", "event__source")
        .only(*DELIVERY_FIELDS, *claiming.CLAIMED_FIELDS, *event_fields, "event__source__slug")
        .order_by(*sequencing.claim_order(sub))
    )


def still_due(sub: Subscription) -> bool:
    if sequencing.applies(sub):
        return sequencing.has_due(sub, timezone.now())
    return selectors.has_due(sub.pk)


def unclaim(deliveries: Iterable[Delivery]) -> None:
    ids = [d.pk for d in deliveries]
    if ids:
        Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.SENDING).update(
            status=DeliveryStatus.PENDING, claimed_until=None
        )


def renew_claims(sub: Subscription, deliveries: list[Delivery], now: datetime) -> None:
    lease = lease_for(sub, now)
    Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], status=DeliveryStatus.SENDING
    ).update(claimed_until=lease)
    Subscription.objects.filter(pk=sub.pk).update(lease_until=lease)
    sub.lease_until = lease


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
    # Ordering keys whose delivery failed in this batch: the rest of each key waits for it.
    held, expired, later = set(), [], []
    for index, delivery in enumerate(batch):
        now = timezone.now()
        if delivery.expires_at is not None and now >= delivery.expires_at:
            expired.append(delivery)
            continue
        if delivery.order_key in held:
            later.append(delivery)
            continue
        if lease_is_short(sub, now):
            # A slow (not dead) subscriber: keep the claims (of the sent ones too: they are
            # recorded at the end of the batch) so the sweep hands none of them out again.
            renew_claims(sub, batch, now)
        body, headers = build_request(delivery, sub, now)
        result = sender.post(client, sub.url, body, headers, now, timeout=sub.timeout_seconds)
        attempts.append(apply_result(delivery, result, now))
        done.append(delivery)
        if delivery.order_key and delivery.status == DeliveryStatus.RETRYING:
            held.add(delivery.order_key)
        if result.network_failure or result.status_code == 410:
            healthy = False
            unclaim(batch[index + 1 :])
            break
    # Sending took a while: a connection PostgreSQL dropped meanwhile is replaced, so that
    # the outcome is written (else the batch would be sent again once its claims end).
    drop_broken_connections()
    unclaim(later)
    sequencing.end_unsent(sub, expired, DeliveryStatus.EXPIRED)
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
    client = sender.http_client()
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
            renew_lease(sub, timezone.now())
    finally:
        if waiting:
            _waiting.release()
        release_subscription(sub)
    if more or still_due(sub):
        # Another drain was refused while this one held the lease, or time ran out.
        work.request_drains([subscription_id])
    return sent
