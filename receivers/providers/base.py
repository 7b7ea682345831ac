"""What every provider module declares: how to verify a request and how to read an event.

A provider never sees Django's request: it gets an `Incoming` (the exact raw body and the
headers) and its source's options, so the same code verifies a live request, a test fixture and
a benchmark. Providers import nothing else of the hub and no Django settings (pyproject.toml's
import contracts).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

# Django's clock, so that a test freezing it freezes verification too; nothing else of Django.
from django.utils import timezone


class VerificationFailed(Exception):
    """The request is not authentic. The reason is logged, never sent to the caller."""


class StaleTimestamp(VerificationFailed):
    """The signed timestamp is outside the source's tolerance (a replay, or a clock far off)."""


class BadPayload(Exception):
    """The body is authentic but lacks what the provider requires; the message is public."""


class CaseInsensitiveDict(dict):
    """Header names compared without case, as HTTP requires."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()):
        super().__init__()
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class SourceOptions(Protocol):
    """What a provider reads of its source (receivers.models.Source has it): the tolerance for
    signed timestamps, and the options a provider declares for itself."""

    tolerance_seconds: int


@dataclass(frozen=True)
class Incoming:
    body: bytes
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    query: Mapping[str, str] = field(default_factory=dict)
    # What followed /hooks/<slug>/ in the URL: gridX's samples put the event type there.
    path_suffix: str = ""
    remote_addr: str = ""


@dataclass(frozen=True)
class ParsedEvent:
    external_id: str | None
    type: str
    occurred_at: datetime | None = None
    is_test: bool = False


@dataclass(frozen=True)
class SignedRequest:
    """What a sender would send: used by tests, benchmarks and the admin's test tools."""

    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


class Provider:
    """One platform, described by its class: the rest of the hub reads these facts from the
    registry (receivers.providers.PROVIDERS) and keeps no list of its own."""

    # The registry key, stored as Source.provider.
    name: str = ""
    # What the admin and the API show.
    label: str = ""
    # A signature covers the raw body. False: only the sender is authenticated (an API key, a
    # token), so a tampered body cannot be caught.
    signs_body: bool = True
    # The secret travels in the URL as ?token=: generated URL-safe and shown in the receive URL.
    url_token: bool = False
    # A signed timestamp is checked against the source's tolerance_seconds.
    signs_timestamp: bool = False
    # The source's fields this provider reads besides its secrets (the admin groups them).
    options: tuple[str, ...] = ()
    # The platform sends the secret itself (an API key, a URL token), so an equality check is all
    # verify() needs: the hub keeps only the secret's digest, and verify() gets digests.
    checks_token: bool = False
    # Headers whose values could authenticate a request: stored masked.
    secret_headers: tuple[str, ...] = ()
    # The answer to a stored event is an empty 200 (eDRV asks for it), not a small JSON body.
    empty_success_body: bool = False
    # What the platform does to a webhook that keeps failing: shown when its source falls silent.
    failure_note: str = ""
    # The hub's own source (its alerts): never offered for a real source, refuses every request.
    internal: bool = False

    def stored_secret(self, secret: str) -> str:
        """What the hub keeps of a secret and later hands verify(): the secret itself (kept
        encrypted), or its digest when an equality check is all verify() needs."""
        return token_digest(secret) if self.checks_token else secret

    def credential_headers(self, source: SourceOptions) -> tuple[str, ...]:
        """The headers of a request to this source that could authenticate it."""
        return self.secret_headers

    def option_errors(self, source: SourceOptions) -> dict[str, str]:
        """Why the source's options cannot work, by field name; empty when they can."""
        return {}

    def verify(
        self,
        incoming: Incoming,
        secrets: list[str],
        source: SourceOptions,
        now: datetime | None = None,
    ) -> None:
        """Raise VerificationFailed unless the request is authentic under ANY of `secrets`
        (the keys, or for a provider that `checks_token`, the token_digest of each token).

        `now` is for providers that sign a timestamp (None: the current time), so tests and
        tools can check a recorded request without patching the clock.
        """
        raise NotImplementedError

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        raise NotImplementedError

    def sign(self, body: bytes, secret: str, source: SourceOptions, now: datetime) -> SignedRequest:
        raise NotImplementedError


def hmac_digest(key: bytes, content: bytes, algorithm: str) -> bytes:
    return hmac.new(key, content, getattr(hashlib, algorithm)).digest()


def matches_any(candidates: Iterable[bytes], expected: Iterable[bytes]) -> bool:
    """Constant-time: every candidate is compared with every expected digest."""
    found = False
    expected = list(expected)
    for candidate in candidates:
        for digest in expected:
            found |= hmac.compare_digest(candidate, digest)
    return found


def token_digest(token: str) -> str:
    """What the hub keeps of a credential that a platform sends as it is (Provider.checks_token):
    its SHA-256, in hex. Never the credential itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(given: str, digests: Iterable[str]) -> bool:
    """Constant time: the digest of a credential sent as-is (token, API key) against the digests
    of every active secret."""
    return matches_any([token_digest(given).encode()], [digest.encode() for digest in digests])


# A Unix time above this is in milliseconds (1e11 seconds is the year 5138).
MILLISECONDS_ABOVE = 10**11


def unix_time(text: str | None, milliseconds: bool = False) -> int | float | None:
    """The Unix time in a signed header (at most 16 ASCII digits), or None when it is not one.

    With `milliseconds`, a value too large for seconds is read as milliseconds: for senders
    whose documentation does not say which they send."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 16:
        return None
    seconds = int(text)
    if milliseconds and seconds > MILLISECONDS_ABOVE:
        return seconds / 1000
    return seconds


def within_tolerance(timestamp: float, now: datetime | None, tolerance_seconds: int) -> bool:
    """A signed timestamp (Unix seconds) no further than the tolerance from now (None: the
    current time), either way."""
    now = now or timezone.now()
    return abs(now.timestamp() - timestamp) <= tolerance_seconds


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from a standard `Authorization: Basic base64(user:password)`."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    decoded = decode_base64(token)
    if decoded is None:
        return None
    try:
        text = decoded.decode()
    except UnicodeDecodeError:
        return None
    user, colon, password = text.partition(":")
    return (user, password) if colon else None


def decode_hex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return None


def decode_base64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, TypeError):
        return None


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 / RFC 3339 strings or Unix seconds/milliseconds; None when unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        # Normalised here: a date at the edge of the calendar (year 1 with a positive offset)
        # overflows in UTC, and must not fail later when the database converts it.
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def read_envelope(
    payload: Any,
    label: str,
    id_path: tuple[str, ...],
    type_path: tuple[str, ...],
    time_path: tuple[str, ...],
) -> ParsedEvent:
    """The common case: id, type and time at fixed (possibly nested) places in the body."""
    body = require_object(payload)
    event_id = string_field(body, *id_path)
    event_type = string_field(body, *type_path)
    if event_id is None or event_type is None:
        raise BadPayload(f'{label} events need "{".".join(id_path)}" and "{".".join(type_path)}".')
    time_value: Any = body
    for key in time_path:
        time_value = time_value.get(key) if isinstance(time_value, dict) else None
    return ParsedEvent(external_id=event_id, type=event_type, occurred_at=parse_time(time_value))


def require_object(payload: Any) -> dict:
    if not isinstance(payload, dict):
        raise BadPayload("The body must be a JSON object.")
    return payload


def string_field(payload: dict, *path: str) -> str | None:
    """A nested string (or number) field, or None. Tolerant of missing levels."""
    value: Any = payload
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None
