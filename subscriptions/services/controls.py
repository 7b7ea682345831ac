"""What an operator does to subscriptions: pause, resume, rotate the signing secret, send a
test event. The admin and the API call these."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from receivers.models import Event, Source

from .. import sender, work
from ..models import Delivery, Subscription, generate_signing_secret
from ..payloads import build_request
from ..sender import Result
from ..targets import TargetRefused, check_target
from .alerts import subscriptions_resumed
from .fanout import new_webhook_id

SIGNING_GRACE_HOURS = 24
# The admin waits for the answer, so a slow target must not hold the page for long.
TEST_TIMEOUT_SECONDS = 10
TEST_EVENT_TYPE = "ping"
TEST_SOURCE_SLUG = "hub-test"


def pause(subscriptions: QuerySet[Subscription], reason: str = "Paused by an operator.") -> int:
    """Stop sending; new events still become deliveries and wait for the resume.

    Returns how many were sending."""
    return subscriptions.filter(is_active=True, is_paused=False).update(
        is_paused=True, disabled_at=timezone.now(), disabled_reason=reason[:300]
    )


def resume(subscriptions: QuerySet[Subscription]) -> int:
    """Start sending again (paused or disabled ones), backlog first; returns how many."""
    ids = list(
        subscriptions.filter(Q(is_active=False) | Q(is_paused=True)).values_list("pk", flat=True)
    )
    # Without clearing failing_since the sweep would disable a long-failing one again at once.
    Subscription.objects.filter(pk__in=ids).update(
        is_active=True,
        is_paused=False,
        disabled_at=None,
        disabled_reason="",
        failing_since=None,
        backoff_until=None,
    )
    subscriptions_resumed(ids)
    work.request_drains(ids)
    return len(ids)


@transaction.atomic
def rotate_signing_secret(sub: Subscription, grace_hours: int = SIGNING_GRACE_HOURS) -> str:
    """New signing secret; the old one still signs (as a second signature) during the grace."""
    locked = Subscription.objects.select_for_update().get(pk=sub.pk)
    sub.previous_secret = locked.secret
    sub.previous_secret_expires_at = timezone.now() + timedelta(hours=grace_hours)
    sub.secret = generate_signing_secret()
    sub.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return sub.secret


def ping_request(sub: Subscription, now) -> tuple[bytes, dict[str, str]]:
    """A signed ping built by the real delivery code, from rows that are never saved."""
    payload = {
        "id": f"evt_test_{uuid.uuid4().hex}",
        "type": TEST_EVENT_TYPE,
        "time": now.isoformat(),
        "test": True,
        "data": {"message": "Test event from the webhook hub.", "subscription": sub.name},
    }
    event = Event(
        source=Source(slug=TEST_SOURCE_SLUG),
        external_id=payload["id"],
        type=TEST_EVENT_TYPE,
        received_at=now,
        headers={"content-type": "application/json"},
        raw_body=json.dumps(payload).encode(),
        payload=payload,
        is_test=True,
    )
    delivery = Delivery(event=event, subscription=sub, webhook_id=new_webhook_id())
    body, headers = build_request(delivery, sub, now)
    headers["x-hub-test"] = "1"
    return body, headers


def send_test_event(sub: Subscription) -> Result:
    """POST a signed ping now and return the answer; nothing is stored."""
    now = timezone.now()
    try:
        check_target(sub.url)
    except TargetRefused as exc:
        return Result(None, 0, "", f"refused: {exc}")
    body, headers = ping_request(sub, now)
    timeout = min(sub.timeout_seconds, TEST_TIMEOUT_SECONDS)
    return sender.post(sender.http_client(), sub.url, body, headers, now, timeout=timeout)
