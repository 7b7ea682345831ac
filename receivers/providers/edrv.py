"""eDRV: `edrv-signature: t=<timestamp>,v1=<hex HMAC-SHA256>`, answered with an empty 200.

eDRV disables a webhook that fails too often, so the answer never depends on anything after
the Event row is stored, and it is an empty body, as eDRV asks.

The signature is optional on eDRV's side, but never on the hub's: a source without a secret
must choose `verify_nothing` (or another check such as the IP allow list) explicitly, and a
request without the header is rejected.
"""

from datetime import datetime
from typing import Any

from .base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    StaleTimestamp,
    VerificationFailed,
    decode_hex,
    hmac_digest,
    matches_any,
    read_envelope,
    unix_time,
    within_tolerance,
)

HEADER = "edrv-signature"
MAX_SIGNATURES = 5


class Edrv(Provider):
    name = "edrv"
    label = "eDRV"
    signs_timestamp = True
    secret_headers = (HEADER,)
    empty_success_body = True
    failure_note = (
        "eDRV disables a webhook after repeated failures: check that it is still enabled in "
        "eDRV and enable it again."
    )

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        header = incoming.headers.get(HEADER)
        if not header:
            raise VerificationFailed(f"missing {HEADER} header")
        timestamp = None
        candidates = []
        for part in header.split(","):
            key, _, value = part.strip().partition("=")
            if key == "t" and timestamp is None:
                timestamp = value.strip()
            elif key == "v1" and len(candidates) < MAX_SIGNATURES:
                digest = decode_hex(value)
                if digest:
                    candidates.append(digest)
        # eDRV does not document whether `t` counts seconds or milliseconds: both are read.
        seconds = unix_time(timestamp, milliseconds=True)
        if seconds is None:
            raise VerificationFailed(f"no t=<timestamp> in {HEADER}")
        if not candidates:
            raise VerificationFailed(f"no v1 signature in {HEADER}")
        if not within_tolerance(seconds, now, source.tolerance_seconds):
            raise StaleTimestamp("the signed timestamp is outside the tolerance")
        # eDRV's documentation shows the header but not the exact signed string. Stripe-style
        # `<t>.<raw body>` is the usual meaning of `t=...,v1=...` and the only form that binds
        # the timestamp; the raw body alone is accepted too, so a sender that signs only the
        # body is not rejected. Either way nobody can forge a body without the secret; in the
        # body-only form `t` is not signed, so replays are stopped by the unique `_id` instead.
        contents = [f"{timestamp}.".encode() + incoming.body, incoming.body]
        expected = [
            hmac_digest(secret.encode(), content, "sha256")
            for secret in secrets
            for content in contents
        ]
        if not matches_any(candidates, expected):
            raise VerificationFailed("no signature matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        return read_envelope(payload, "eDRV", ("_id",), ("type",), ("createdAt",))

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        timestamp = int(now.timestamp())
        digest = hmac_digest(secret.encode(), f"{timestamp}.".encode() + body, "sha256").hex()
        return SignedRequest(headers={HEADER: f"t={timestamp},v1={digest}"})
