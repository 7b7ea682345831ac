"""What a subscriber receives: the original bytes or one CloudEvents 1.0 envelope, with the
hub's headers and Standard Webhooks signatures."""

import json
from datetime import datetime

from django.conf import settings

from receivers.models import Event
from receivers.text import header_safe, sendable_header_name

from .models import Delivery, PayloadFormat, Subscription
from .signing import signature_headers

USER_AGENT = "hub-webhooks/1.0"


def content_type_of(event: Event) -> str:
    for name, value in event.headers.items():
        if name.lower() == "content-type":
            return value
    return "application/json"


def cloudevent(event: Event, source_slug: str) -> dict:
    """The same envelope for every provider, so subscribers need one parser."""
    return {
        "specversion": "1.0",
        "id": event.external_id,
        "source": f"{settings.HUB_PUBLIC_URL}/hooks/{source_slug}/",
        "type": event.type,
        "time": (event.occurred_at or event.received_at).isoformat(),
        "datacontenttype": "application/json",
        "data": event.payload,
    }


def render(event: Event, subscription: Subscription, source_slug: str) -> tuple[bytes, str]:
    if subscription.payload_format == PayloadFormat.CLOUDEVENTS:
        body = json.dumps(cloudevent(event, source_slug), separators=(",", ":")).encode()
        return body, "application/cloudevents+json"
    return bytes(event.raw_body), content_type_of(event)


def build_request(delivery: Delivery, sub: Subscription, now: datetime) -> tuple[bytes, dict]:
    event = delivery.event
    body, content_type = render(event, sub, event.source.slug)
    headers = static_headers(sub)
    headers.update(
        {
            "content-type": header_safe(content_type),
            "user-agent": USER_AGENT,
            "x-hub-event-type": header_safe(event.type),
            "x-hub-source": event.source.slug,
        }
    )
    headers.update(
        signature_headers(sub.signing_secrets(now), delivery.webhook_id, int(now.timestamp()), body)
    )
    return body, headers


def static_headers(sub: Subscription) -> dict[str, str]:
    """The subscription's own headers, never one http.client cannot send (the model refuses
    them now; rows saved before may still hold one)."""
    return {
        str(name): header_safe(str(value))
        for name, value in (sub.headers or {}).items()
        if sendable_header_name(str(name))
    }
