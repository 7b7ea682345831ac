"""The sweep: beat runs it every HUB_SWEEP_SECONDS to hand out again whatever a lost broker
message or a dead worker left, so that nothing depends on the broker alone."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from receivers.models import Event, EventStatus

from .. import selectors, work
from ..models import Delivery, DeliveryStatus, Subscription
from . import sequencing
from .fanout import fan_out
from .outcomes import disable_subscription

logger = logging.getLogger(__name__)

PENDING_GRACE = timedelta(seconds=2)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Find work whose broker message was lost or whose worker died, and hand it out again."""
    now = now or timezone.now()
    counts = {"stale_events": 0, "expired_claims": 0, "drains": 0, "disabled": 0}
    counts["expired_deliveries"] = sequencing.expire_everywhere(now)
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
    due = set(selectors.due_deliveries(now).values_list("subscription_id", flat=True).distinct())
    counts["drains"] = len(due)
    work.request_drains(due)
    if any(counts.values()):
        logger.info("sweep found work: %s", counts)
    return counts
