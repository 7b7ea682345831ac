"""Backfill: stored events sent to a subscription on request, e.g. those received before it
existed.

The events are the ones the subscription would have taken (its types and sources), narrowed by
the request's time range, types and sources, and are handed out in received order, a chunk per
transaction. The Backfill row holds the cursor with the counts, so a run that is lost (a dead
worker, a lost message) is resumed by the sweep where it stopped, and nothing is sent twice:
an event already delivered to the subscription, or on its way, is skipped unless `resend` is
asked for; one whose delivery failed for good is sent again.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from receivers.admin.lists import distinct_values
from receivers.models import Event, EventStatus, Source

from .. import options, selectors, work
from ..models import Backfill, BackfillState, Delivery, DeliveryStatus, Subscription
from ..options import Stamp
from .fanout import new_webhook_id, wake

logger = logging.getLogger(__name__)

CHUNK = 500
RUN_SECONDS = 20
LEASE = timedelta(seconds=120)
MAX_TYPES = 10_000
# A backfill whose message was lost, or whose worker died, is asked for again after this.
QUEUED_GRACE = timedelta(seconds=10)


@dataclass
class Request:
    received_after: datetime
    received_before: datetime
    event_types: list[str] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    resend: bool = False


def events_for(sub: Subscription, request: Request) -> QuerySet[Event]:
    """The events a backfill sends, in received order."""
    events = Event.objects.filter(
        received_at__gte=request.received_after,
        received_at__lt=request.received_before,
        is_test=False,
    )
    chosen = set(sub.sources.values_list("pk", flat=True))
    internal = selectors.internal_source_ids()
    asked = {source.pk for source in request.sources}
    if asked:
        # The subscription's own choice still holds; without one, the hub's source is not in it.
        allowed = asked & chosen if chosen else asked - internal
        events = events.filter(source_id__in=allowed)
    elif chosen:
        events = events.filter(source_id__in=chosen)
    else:
        events = events.exclude(source_id__in=internal)
    types = [
        t
        for t in distinct_values(Event, "type", MAX_TYPES)
        if sub.matches(t)
        and (not request.event_types or any(fnmatch.fnmatchcase(t, p) for p in request.event_types))
    ]
    return events.filter(type__in=types).order_by("received_at", "pk")


def preview(sub: Subscription, request: Request) -> dict[str, int]:
    """How many events a backfill would go through, and how many were delivered already."""
    events = events_for(sub, request)
    delivered = events.filter(
        deliveries__subscription=sub, deliveries__status=DeliveryStatus.SUCCEEDED
    )
    return {"count": events.count(), "already_delivered": delivered.count()}


def start(sub: Subscription, request: Request, created_by: str = "") -> Backfill:
    """Record the backfill, then ask a worker to run it (the sweep does, should that fail)."""
    with transaction.atomic():
        backfill = Backfill.objects.create(
            subscription=sub,
            received_after=request.received_after,
            received_before=request.received_before,
            event_types=request.event_types,
            resend=request.resend,
            total=events_for(sub, request).count(),
            created_by=created_by[:150],
        )
        backfill.sources.set(request.sources)
        transaction.on_commit(lambda: request_run(backfill.pk))
    return backfill


def request_run(backfill_id: int) -> bool:
    try:
        work.request(work.RUN_BACKFILL, backfill_id)
    except (BrokerError, OSError) as exc:
        logger.warning("broker unavailable, the sweep starts backfill %s: %s", backfill_id, exc)
        return False
    return True


def request_of(backfill: Backfill) -> Request:
    return Request(
        backfill.received_after,
        backfill.received_before,
        list(backfill.event_types),
        list(backfill.sources.all()),
        backfill.resend,
    )


def run(backfill_id: int, max_seconds: float = RUN_SECONDS) -> int:
    """Go through a backfill's events for up to `max_seconds`; returns how many were looked at.
    One run at a time holds a backfill (a lease); when time is up, another run is asked for."""
    now = timezone.now()
    claimed = (
        Backfill.objects.filter(
            pk=backfill_id, state__in=[BackfillState.QUEUED, BackfillState.RUNNING]
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(state=BackfillState.RUNNING, lease_until=now + LEASE)
    )
    if not claimed:
        return 0
    backfill = Backfill.objects.select_related("subscription").get(pk=backfill_id)
    events = events_for(backfill.subscription, request_of(backfill))
    started, examined = time.monotonic(), 0
    while time.monotonic() - started < max_seconds:
        count = run_chunk(backfill.pk, events)
        if count == 0:
            return examined
        examined += count
    # Time is up: free for the next run at once, and ask for it.
    Backfill.objects.filter(pk=backfill_id).update(lease_until=timezone.now())
    request_run(backfill_id)
    return examined


def run_chunk(backfill_id: int, events: QuerySet[Event]) -> int:
    """The next chunk after the cursor, in one transaction; 0 when there is none (done)."""
    with transaction.atomic():
        locked = Backfill.objects.select_for_update().select_related("subscription")
        backfill = locked.filter(pk=backfill_id).first()
        if backfill is None:
            return 0  # deleted with its subscription meanwhile
        if backfill.cursor_id is not None:
            at, pk = backfill.cursor_received_at, backfill.cursor_id
            events = events.filter(Q(received_at__gt=at) | Q(received_at=at, pk__gt=pk))
        chunk = list(events.values_list("pk", "received_at")[:CHUNK])
        now = timezone.now()
        if not chunk:
            backfill.state, backfill.finished_at, backfill.lease_until = (
                BackfillState.DONE,
                now,
                None,
            )
            backfill.save(update_fields=["state", "finished_at", "lease_until"])
            return 0
        queued, skipped = hand_out(backfill.subscription, [pk for pk, _ in chunk], backfill.resend)
        backfill.cursor_id, backfill.cursor_received_at = chunk[-1]
        backfill.examined += len(chunk)
        backfill.queued += queued
        backfill.skipped += skipped
        backfill.lease_until = now + LEASE
        backfill.save(
            update_fields=[
                "cursor_id",
                "cursor_received_at",
                "examined",
                "queued",
                "skipped",
                "lease_until",
            ]
        )
        sub_id = backfill.subscription_id
        transaction.on_commit(lambda: wake([sub_id]))
    return len(chunk)


def hand_out(sub: Subscription, event_ids: list[int], resend: bool) -> tuple[int, int]:
    """Deliveries for these events (in received order), made or sent again; returns how many
    were handed out and how many skipped."""
    existing = {
        event_id: (pk, status)
        for pk, event_id, status in Delivery.objects.filter(
            subscription=sub, event_id__in=event_ids
        ).values_list("pk", "event_id", "status")
    }
    now = timezone.now()
    stamps = option_stamps(sub, [e for e in event_ids if e not in existing])
    new, again, skipped = [], [], 0
    for index, event_id in enumerate(event_ids):
        # Drains send by next_attempt_at: one microsecond apart keeps the received order.
        due = now + timedelta(microseconds=index)
        if event_id not in existing:
            if event_id in stamps and stamps[event_id] is None:
                skipped += 1  # the subscription's payload filter refuses it
                continue
            new.append(
                Delivery(
                    event_id=event_id,
                    subscription=sub,
                    webhook_id=new_webhook_id(),
                    next_attempt_at=due,
                    **asdict(stamps.get(event_id) or Stamp()),
                )
            )
            continue
        pk, status = existing[event_id]
        if status == DeliveryStatus.FAILED or (resend and status == DeliveryStatus.SUCCEEDED):
            again.append(
                Delivery(
                    pk=pk,
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=due,
                    replay_requested=True,
                    claimed_until=None,
                )
            )
        else:
            skipped += 1
    Delivery.objects.bulk_create(new, ignore_conflicts=True)
    Delivery.objects.bulk_update(
        again, ["status", "next_attempt_at", "replay_requested", "claimed_until"]
    )
    Event.objects.filter(pk__in=[d.event_id for d in new], status=EventStatus.IGNORED).update(
        status=EventStatus.DISPATCHED
    )
    return len(new) + len(again), skipped


def option_stamps(sub: Subscription, event_ids: list[int]) -> dict[int, Stamp | None]:
    """For a subscription with options, each new event's keys and deadline, as a fan-out
    stamps them, or None for an event its payload filter refuses; empty without options."""
    try:
        plan = options.plan_of(sub)
    except ValueError:
        return dict.fromkeys(event_ids)
    if plan is None or not event_ids:
        return {}
    fields = ["pk", "type", *options.event_fields([plan])]
    events = Event.objects.filter(pk__in=event_ids).only(*fields)
    return {e.pk: plan.stamp(e) if plan.admits(e) else None for e in events}


def resume_backfills(now: datetime) -> int:
    """For the sweep: backfills whose run was lost (a message, a worker) are asked for again."""
    lost = Backfill.objects.filter(
        Q(lease_until__isnull=True, created_at__lt=now - QUEUED_GRACE)
        | Q(lease_until__lt=now - QUEUED_GRACE),
        state__in=[BackfillState.QUEUED, BackfillState.RUNNING],
    ).values_list("pk", flat=True)
    resumed = 0
    for backfill_id in lost:
        if not request_run(backfill_id):
            break
        resumed += 1
    return resumed
