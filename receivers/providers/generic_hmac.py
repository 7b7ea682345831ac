"""Generic HMAC, for platforms not listed elsewhere: every part of the scheme is per source.

`source.hmac_header` carries the signature, `hmac_algorithm` / `hmac_encoding` / `hmac_prefix`
describe it, and `hmac_template` the signed content: `{body}` is the raw body and
`{header:Name}` the value of a request header (for example a timestamp the sender adds).
`hmac_timestamp_header` names such a timestamp, which must then be within the source's
tolerance, as for eDRV and Standard Webhooks.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from .base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    StaleTimestamp,
    VerificationFailed,
    decode_base64,
    decode_hex,
    hmac_digest,
    matches_any,
    parse_time,
    string_field,
    unix_time,
    within_tolerance,
)

ALGORITHMS = {"sha1", "sha256", "sha512"}
PLACEHOLDER = re.compile(r"\{body\}|\{header:([^{}]+)\}")
MAX_SIGNATURES = 5
ID_FIELDS = ("id", "event_id", "eventId", "uuid")
TYPE_FIELDS = ("type", "event", "eventType", "event_type")
TIME_FIELDS = ("timestamp", "time", "created_at", "createdAt", "occurred_at")


class HmacOptions(Protocol):
    """The source's options this provider reads (receivers.models.Source has them)."""

    tolerance_seconds: int
    hmac_header: str
    hmac_algorithm: str
    hmac_encoding: str
    hmac_prefix: str
    hmac_template: str
    hmac_timestamp_header: str


class GenericHmac(Provider):
    name = "hmac"
    label = "Generic HMAC"
    # When the source names a timestamp header (hmac_timestamp_header).
    signs_timestamp = True
    options = (
        "hmac_header",
        "hmac_algorithm",
        "hmac_encoding",
        "hmac_prefix",
        "hmac_template",
        "hmac_timestamp_header",
    )

    def credential_headers(self, source: HmacOptions) -> tuple[str, ...]:
        return (source.hmac_header,) if source.hmac_header else ()

    def option_errors(self, source: HmacOptions) -> dict[str, str]:
        errors = {}
        if not source.hmac_header:
            errors["hmac_header"] = "The hmac provider needs a header."
        if not signs_the_body(source.hmac_template):
            errors["hmac_template"] = (
                "The template must sign the body: include {body}, or one captured signature "
                "would authenticate any body."
            )
        timestamp_error = unsigned_timestamp_error(
            source.hmac_template, source.hmac_timestamp_header
        )
        if timestamp_error:
            errors["hmac_timestamp_header"] = timestamp_error
        return errors

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        if not source.hmac_header or source.hmac_algorithm not in ALGORITHMS:
            raise VerificationFailed("the source's HMAC header or algorithm is not configured")
        if not signs_the_body(source.hmac_template):
            raise VerificationFailed("the source's template does not sign the body")
        header = incoming.headers.get(source.hmac_header)
        if not header:
            raise VerificationFailed(f"missing {source.hmac_header} header")
        # Several comma-separated signatures are accepted: senders that rotate send both.
        candidates = [
            digest
            for part in header.split(",")[:MAX_SIGNATURES]
            if (digest := decode_signature(part, source)) is not None
        ]
        if not candidates:
            raise VerificationFailed(f"no readable signature in {source.hmac_header}")
        if source.hmac_timestamp_header:
            check_fresh(incoming.headers.get(source.hmac_timestamp_header), source, now)
        content = signed_content(source.hmac_template, incoming.body, incoming.headers)
        expected = [
            hmac_digest(secret.encode(), content, source.hmac_algorithm) for secret in secrets
        ]
        if not matches_any(candidates, expected):
            raise VerificationFailed("no signature matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        # Any JSON is stored; without an id the service deduplicates on the body's hash.
        body = payload if isinstance(payload, dict) else {}
        return ParsedEvent(
            external_id=first_field(body, ID_FIELDS),
            type=first_field(body, TYPE_FIELDS) or "unknown",
            occurred_at=next(
                filter(None, (parse_time(body.get(name)) for name in TIME_FIELDS)), None
            ),
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        # A header named in the template is given the Unix time of `now`: besides the body,
        # a timestamp is what such templates sign.
        headers = {name: str(int(now.timestamp())) for name in template_headers(source)}
        content = signed_content(source.hmac_template, body, headers)
        digest = hmac_digest(secret.encode(), content, source.hmac_algorithm)
        if source.hmac_encoding == "hex":
            text = digest.hex()
        else:
            text = base64.b64encode(digest).decode()
        return SignedRequest(headers={**headers, source.hmac_header: source.hmac_prefix + text})


def check_fresh(value: str | None, source: HmacOptions, now: datetime | None) -> None:
    """The sender's timestamp is within the source's tolerance: a captured request cannot be
    replayed later. (The template signs it, so it cannot be changed either.)"""
    name = source.hmac_timestamp_header
    seconds = unix_time((value or "").strip(), milliseconds=True)
    if seconds is None:
        raise VerificationFailed(f"no Unix timestamp in {name}")
    if not within_tolerance(seconds, now, source.tolerance_seconds):
        raise StaleTimestamp(f"{name} is outside the tolerance")


def decode_signature(part: str, source: HmacOptions) -> bytes | None:
    value = part.strip()
    prefix = source.hmac_prefix.strip()
    if prefix:
        if not value.lower().startswith(prefix.lower()):
            return None
        value = value[len(prefix) :].strip()
    decoded = decode_hex(value) if source.hmac_encoding == "hex" else decode_base64(value)
    return decoded or None


def signed_content(template: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The template as bytes; a header it names but the request lacks fails verification."""
    lower = {name.lower(): value for name, value in headers.items()}
    parts: list[bytes] = []
    position = 0
    for match in PLACEHOLDER.finditer(template):
        parts.append(template[position : match.start()].encode())
        name = match.group(1)
        if name is None:
            parts.append(body)
        elif name.strip().lower() in lower:
            parts.append(header_bytes(lower[name.strip().lower()]))
        else:
            raise VerificationFailed(f"the signed template needs the {name} header")
        position = match.end()
    parts.append(template[position:].encode())
    return b"".join(parts)


def header_bytes(value: str) -> bytes:
    # WSGI hands header values over decoded as latin-1: encoding back gives the sent bytes.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def signs_the_body(template: str) -> bool:
    return any(match.group(1) is None for match in PLACEHOLDER.finditer(template))


def template_headers(source: HmacOptions) -> list[str]:
    return named_headers(source.hmac_template)


def named_headers(template: str) -> list[str]:
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(template) if m.group(1)]


def unsigned_timestamp_error(template: str, timestamp_header: str) -> str | None:
    """Why these options would check a timestamp nobody signed, or None.

    A timestamp outside the signed content could be rewritten by whoever replays a request."""
    if not timestamp_header:
        return None
    if timestamp_header.strip().lower() in {name.lower() for name in named_headers(template)}:
        return None
    return f"Name the timestamp in the template too, as {{header:{timestamp_header.strip()}}}."


def first_field(body: dict, names: tuple[str, ...]) -> str | None:
    return next(filter(None, (string_field(body, name) for name in names)), None)
