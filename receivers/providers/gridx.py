"""gridX / XENON: CloudEvents-shaped JSON signed with one or more HMAC-SHA512 digests.

During a secret rotation gridX sends up to five `sha512=<hex>` digests joined by ", "; the
request is authentic if any digest matches any active secret. No timestamp is signed, so
replays are stopped by the unique event id.
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
MAX_DIGESTS = 5
TEST_TYPES = {"ping"}


class GridX(Provider):
    name = "gridx"
    label = "gridX / XENON"
    secret_headers = (HEADER,)
    failure_note = (
        "gridX deletes a webhook subscription that answers 410 and disables one after repeated "
        "failures: check the subscription in XENON and register it again if it is gone."
    )

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        header = incoming.headers.get(HEADER)
        if not header:
            raise VerificationFailed(f"missing {HEADER} header")
        candidates = []
        for part in header.split(",")[:MAX_DIGESTS]:
            scheme, _, value = part.strip().partition("=")
            digest = decode_hex(value) if scheme.lower() == "sha512" else None
            if digest is not None:
                candidates.append(digest)
        if not candidates:
            raise VerificationFailed(f"no sha512 digest in {HEADER}")
        expected = [hmac_digest(secret.encode(), incoming.body, "sha512") for secret in secrets]
        if not matches_any(candidates, expected):
            raise VerificationFailed("no digest matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        body = require_object(payload)
        event_id = string_field(body, "id")
        if event_id is None:
            raise BadPayload('gridX events need an "id".')
        event_type = string_field(body, "type") or type_from_path(incoming.path_suffix)
        if not event_type:
            raise BadPayload('gridX events need a "type" (in the body or the URL path).')
        return ParsedEvent(
            external_id=event_id,
            type=event_type,
            occurred_at=parse_time(body.get("time")),
            is_test=event_type in TEST_TYPES,
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        digest = hmac_digest(secret.encode(), body, "sha512").hex()
        return SignedRequest(headers={HEADER: f"sha512={digest}"})


def type_from_path(path_suffix: str) -> str:
    """The sample receivers listen on /gridx/events/<type>, mounted anywhere: the type is what
    follows the first `events` segment (the whole path when there is none)."""
    segments = path_suffix.strip("/").split("/")
    if "events" in segments:
        segments = segments[segments.index("events") + 1 :]
    return "/".join(segments)
