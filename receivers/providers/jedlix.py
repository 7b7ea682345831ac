"""Jedlix: `Authorization: Basic <apiKey>`, the raw key the integrator chose, not base64.

The key authenticates the sender but does not cover the body. When a subscription is
registered Jedlix sends a test message (`isTest: true`) and fails the registration unless it
is acknowledged, so a test message is accepted even when it lacks the usual fields.
"""

from datetime import datetime
from typing import Any

from .base import (
    BadPayload,
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    VerificationFailed,
    parse_time,
    require_object,
    string_field,
    token_matches,
)

HEADER = "Authorization"
SCHEME = "basic"


class Jedlix(Provider):
    name = "jedlix"
    label = "Jedlix"
    failure_note = "Jedlix keeps 7 days of events: ask Jedlix to resend what was missed."
    # The API key authenticates the sender; nothing covers the body.
    signs_body = False
    checks_token = True
    secret_headers = (HEADER,)

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        scheme, _, api_key = (incoming.headers.get(HEADER) or "").strip().partition(" ")
        if scheme.lower() != SCHEME or not api_key.strip():
            raise VerificationFailed(f"no Basic api key in {HEADER}")
        if not token_matches(api_key.strip(), secrets):
            raise VerificationFailed("the api key matches no active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        body = require_object(payload)
        is_test = body.get("isTest") is True
        event_id = string_field(body, "id")
        event_type = string_field(body, "eventType")
        if not is_test and (event_id is None or event_type is None):
            raise BadPayload('Jedlix events need an "id" and an "eventType".')
        return ParsedEvent(
            # A test message without an id is deduplicated on the hash of its body.
            external_id=event_id,
            type=event_type or "test",
            occurred_at=parse_time(body.get("timestamp")),
            is_test=is_test,
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        return SignedRequest(headers={HEADER: f"Basic {secret}"})
