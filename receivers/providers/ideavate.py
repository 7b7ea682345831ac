"""Ideavate: `X-Signature` is the hex HMAC-SHA1 of the raw body, without a prefix.

The documented sample body is pretty-printed and real bodies differ in key order and
whitespace, so only the exact received bytes are ever verified.
"""

from datetime import datetime
from typing import Any

from .base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    VerificationFailed,
    decode_hex,
    hmac_digest,
    matches_any,
    read_envelope,
)

HEADER = "X-Signature"


class Ideavate(Provider):
    name = "ideavate"
    label = "Ideavate"
    failure_note = (
        "Ideavate retries a failed webhook for 72 hours, then gives up on that event: check "
        "the webhook in Ideavate."
    )
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
        return read_envelope(
            payload, "Ideavate", ("webhook", "id"), ("webhook", "trigger"), ("webhook", "date")
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        return SignedRequest(headers={HEADER: hmac_digest(secret.encode(), body, "sha1").hex()})
