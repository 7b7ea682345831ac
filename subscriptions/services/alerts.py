"""Alerts: what the hub raises about itself, once per condition until the condition clears.

An alert is an Alert row (open until `cleared_at`; a unique index allows one open row per kind
and key, so a storm of failures raises one) and an event of the hub's own source, which is
relayed like any other event, signed and retried, to the subscriptions that choose that
source. The mail and the Slack message go out from a task (services/notify.py). Conditions
are checked where they change: here when a batch's outcome is recorded or a subscription is
disabled or resumed, in services/watch.py by the sweep.
"""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from receivers.models import Event, EventStatus, Source
from receivers.providers import INTERNAL
from receivers.signals import event_stored

from .. import work
from ..models import Alert, AlertKind, Delivery, DeliveryStatus, Subscription

logger = logging.getLogger(__name__)

HUB_PROVIDER = "hub"
HUB_SLUGS = ("hub", "hub-alerts")
# Failed attempts in a row that make a subscription failing (Svix's rule).
FAILING_AFTER = 4


def hub_source() -> Source:
    """The hub's own source, created on first use (the sweep makes sure it exists)."""
    found = Source.objects.filter(provider__in=INTERNAL).order_by("pk").first()
    if found is not None:
        return found
    for slug in (*HUB_SLUGS, f"hub-{uuid.uuid4().hex[:8]}"):
        source, _ = Source.objects.get_or_create(
            slug=slug,
            defaults={
                "provider": HUB_PROVIDER,
                "description": "Alerts the hub raises about itself (choose it to receive them).",
            },
        )
        if source.is_internal:
            return source
    raise RuntimeError("no slug left for the hub's own source")  # pragma: no cover


def subject(sub: Subscription | None = None, source: Source | None = None) -> dict:
    if sub is not None:
        return {"subscription": {"id": sub.pk, "name": sub.name, "url": sub.url}}
    if source is not None:
        return {"source": {"slug": source.slug, "provider": source.provider}}
    return {}


def raise_alert(
    kind: str,
    key: str,
    message: str,
    data: dict,
    *,
    sub: Subscription | None = None,
    source: Source | None = None,
    cleared: bool = False,
) -> Alert | None:
    """Open an alert (None when one is open for this condition already), with its event.
    `cleared`: a one-off notice such as subscription.recovered, closed as it opens."""
    if not cleared and Alert.objects.filter(kind=kind, key=key, cleared_at=None).exists():
        return None
    now = timezone.now()
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind,
                key=key,
                message=message[:500],
                subscription=sub,
                source=source,
                opened_at=now,
                cleared_at=now if cleared else None,
            )
            alert.event = store_event(alert, {**subject(sub, source), **data})
            alert.save(update_fields=["event"])
    except IntegrityError:
        return None  # another process opened it a moment ago
    logger.warning("alert %s: %s", kind, message, extra={"subscription": sub and sub.pk})
    transaction.on_commit(lambda: announce(alert))
    return alert


def store_event(alert: Alert, data: dict) -> Event:
    payload = {
        "id": f"alert_{alert.pk}",
        "type": alert.kind,
        "time": alert.opened_at.isoformat(),
        "data": {"message": alert.message, **data},
    }
    return Event.objects.create(
        source=hub_source(),
        external_id=payload["id"],
        type=alert.kind,
        occurred_at=alert.opened_at,
        received_at=alert.opened_at,
        headers={"content-type": "application/json"},
        raw_body=json.dumps(payload, default=str).encode(),
        payload=json.loads(json.dumps(payload, default=str)),
        status=EventStatus.PENDING,
    )


def announce(alert: Alert) -> None:
    """Once committed: fan the event out (as a received event is) and send the notices."""
    if alert.event_id is not None:
        event_stored.send(Event, event_id=alert.event_id)
    try:
        work.request(work.NOTIFY_ALERTS)
    except (BrokerError, OSError) as exc:
        logger.warning("broker unavailable, the sweep sends the alert's notices: %s", exc)


def clear(kind: str, key: str, now: datetime | None = None) -> int:
    return Alert.objects.filter(kind=kind, key=key, cleared_at=None).update(
        cleared_at=now or timezone.now()
    )


def subscription_key(sub_id: int) -> str:
    return f"subscription:{sub_id}"


# Where subscriptions change: a batch's outcome, disabling, resuming --------------------------


def quietly(check: Callable[..., None]) -> Callable[..., None]:
    """An alert check never stops what called it: a failure is logged, the delivery goes on."""

    @functools.wraps(check)
    def run(*args, **kwargs) -> None:
        try:
            check(*args, **kwargs)
        except Exception:  # noqa: BLE001 - logged with its traceback; delivering matters more
            logger.exception("alert check %s failed", check.__name__)

    return run


@quietly
def after_batch(sub: Subscription, failures_before: int, done: list[Delivery]) -> None:
    """A batch's outcome is recorded (services.outcomes.record): cheap unless health changed."""
    key = subscription_key(sub.pk)
    if sub.consecutive_failures >= FAILING_AFTER > failures_before:
        last = done[-1]
        raise_alert(
            AlertKind.SUBSCRIPTION_FAILING,
            key,
            f"{sub.name}: {sub.consecutive_failures} failed attempts in a row "
            f"(the last: {last.last_error or last.last_status_code}).",
            {"consecutive_failures": sub.consecutive_failures, "failing_since": sub.failing_since},
            sub=sub,
        )
    elif sub.consecutive_failures == 0 and failures_before:
        clear(AlertKind.DELIVERY_EXHAUSTED, key)
        if clear(AlertKind.SUBSCRIPTION_FAILING, key):
            raise_alert(
                AlertKind.SUBSCRIPTION_RECOVERED,
                key,
                f"{sub.name} delivers again, after {failures_before} failed attempts.",
                {"failed_attempts": failures_before},
                sub=sub,
                cleared=True,
            )
    exhausted = [d for d in done if d.status == DeliveryStatus.FAILED]
    if exhausted:
        raise_alert(
            AlertKind.DELIVERY_EXHAUSTED,
            key,
            f"{sub.name}: a delivery failed for good (event {exhausted[-1].event_id}: "
            f"{exhausted[-1].last_error or exhausted[-1].last_status_code}).",
            {"deliveries": [d.pk for d in exhausted], "events": [d.event_id for d in exhausted]},
            sub=sub,
        )


@quietly
def subscription_disabled(sub_id: int, reason: str) -> None:
    sub = Subscription.objects.filter(pk=sub_id).first()
    if sub is not None:
        raise_alert(
            AlertKind.SUBSCRIPTION_DISABLED,
            subscription_key(sub_id),
            f"{sub.name} was disabled: {reason}",
            {"reason": reason},
            sub=sub,
        )


@quietly
def subscriptions_resumed(sub_ids: Iterable[int]) -> None:
    for sub_id in sub_ids:
        clear(AlertKind.SUBSCRIPTION_DISABLED, subscription_key(sub_id))
