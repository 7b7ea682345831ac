"""Replays: deliveries sent again on request, keeping their old attempts."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from receivers.models import Event, EventStatus

from .. import selectors, work
from ..models import Delivery, DeliveryStatus
from . import fanout
from .fanout import matching

logger = logging.getLogger(__name__)

REPLAY_CHUNK = 1000


def replay_deliveries(delivery_ids: Iterable[int]) -> int:
    """Send deliveries again. Old attempts stay; the next attempt is marked as a replay."""
    ids = list(delivery_ids)
    count = 0
    for start in range(0, len(ids), REPLAY_CHUNK):
        chunk = ids[start : start + REPLAY_CHUNK]
        count += (
            Delivery.objects.filter(pk__in=chunk)
            .exclude(status=DeliveryStatus.SENDING)
            .update(
                status=DeliveryStatus.PENDING,
                next_attempt_at=timezone.now(),
                replay_requested=True,
                claimed_until=None,
                # Asked for by name: sent whatever its age or newer events of its key.
                expires_at=None,
                coalesce_key="",
            )
        )
    subscription_ids = set(
        Delivery.objects.filter(pk__in=ids).values_list("subscription_id", flat=True).distinct()
    )
    fanout.wake(subscription_ids)
    return count


def replay_event(event: Event) -> int:
    """Replay every delivery of an event, and create those a new subscription now wants."""
    if event.is_test:
        return 0
    subscriptions = selectors.active_subscriptions()
    plans = fanout.plans_of(subscriptions)
    existing = set(event.deliveries.values_list("subscription_id", flat=True))
    internal = selectors.internal_source_ids()
    wanted = matching(event, subscriptions, internal, plans)
    missing = [sub_id for sub_id in wanted if sub_id not in existing]
    stamps = {
        (event.pk, sub_id): plans[sub_id].stamp(event)
        for sub_id in missing
        if sub_id in plans and plans[sub_id].stamps
    }
    fanout.insert_deliveries([(event.pk, sub_id) for sub_id in missing], stamps)
    if missing and event.status != EventStatus.DISPATCHED:
        Event.objects.filter(pk=event.pk).update(status=EventStatus.DISPATCHED)
    return replay_deliveries(event.deliveries.values_list("pk", flat=True))


def queue_replay(delivery_ids: Iterable[int]) -> int:
    """Hand deliveries to Celery for a replay, in chunks; returns how many were asked for."""
    ids = list(delivery_ids)
    for start in range(0, len(ids), REPLAY_CHUNK):
        try:
            work.request(work.REPLAY_DELIVERIES, ids[start : start + REPLAY_CHUNK])
        except (BrokerError, OSError) as exc:
            # The database is the source of truth: marking the rest due now lets the sweep
            # send them once the broker is back.
            logger.warning("broker unavailable, replaying %d inline: %s", len(ids) - start, exc)
            replay_deliveries(ids[start:])
            break
    return len(ids)
