"""Ideavate: `X-Signature` is the hex HMAC-SHA1 of the raw body, without a prefix.

The documented sample body is pretty-printed and real bodies differ in key order and
whitespace, so only the exact received bytes are ever verified.
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
    decode_hex,
    hmac_digest,
    matches_any,
    parse_time,
    require_object,
    string_field,
)

HEADER = "X-Signature"


class Ideavate(Provider):
    name = "ideavate"
    secret_headers = (HEADER,)

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        digest = decode_hex(incoming.headers.get(HEADER) or "")
        if not digest:
            raise VerificationFailed(f"missing or malformed {HEADER} header")
        expected = [hmac_digest(secret.encode(), incoming.body, "sha1") for secret in secrets]
        if not matches_any([digest], expected):
            raise VerificationFailed("the signature matches no active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        body = require_object(payload)
        event_id = string_field(body, "webhook", "id")
        trigger = string_field(body, "webhook", "trigger")
        if event_id is None or trigger is None:
            raise BadPayload('Ideavate events need "webhook.id" and "webhook.trigger".')
        webhook = body["webhook"]
        return ParsedEvent(
            external_id=event_id,
            type=trigger,
            occurred_at=parse_time(webhook.get("date")),
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        return SignedRequest(headers={HEADER: hmac_digest(secret.encode(), body, "sha1").hex()})
