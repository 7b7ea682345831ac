"""Receiving: verify a request, store it as an Event, and answer what the platform expects.

Store first, act later: the Event row is committed before the answer, and everything after
it (fan-out, relays) starts from the database, so a broker outage never loses an event. Once
a new event is stored, receivers.signals.event_stored says so to whoever listens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from . import metrics
from .lookup import cached_source, find_source, forget_sources
from .masking import masked_headers
from .models import Event, EventStatus, RefusalReason, Source
from .providers import get_provider
from .providers.base import BadPayload, Incoming, Provider, StaleTimestamp, VerificationFailed
from .refusals import refuse
from .signals import event_stored
from .storage import NewEvent, bounded_transaction, insert_events
from .text import sendable_header_value, storable_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict | None
    event_id: int | None = None
    duplicate: bool = False


NOT_FOUND = Outcome(404, {"error": "unknown source"})
BAD_TYPE = Outcome(
    400, {"error": "The event type must be printable Latin-1 text, without control characters."}
)
UNAUTHORIZED = Outcome(401, {"error": "verification failed"})


def client_address(remote_addr: str, forwarded_for: str) -> str:
    """The address a request came from, for the allow lists.

    REMOTE_ADDR, unless it is one of HUB_TRUSTED_PROXIES: then the last address in
    X-Forwarded-For that is not a trusted proxy. Each proxy appends the address it received
    the request from, so what stands left of that is whatever the client wrote and is never
    believed. When every hop is a trusted proxy, the first is where the request started."""
    trusted = settings.HUB_TRUSTED_PROXIES
    if not trusted or not in_networks(remote_addr, trusted):
        return remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop
    return hops[0] if hops else remote_addr


def in_networks(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def ip_allowed(source: Source, remote_addr: str) -> bool:
    entries = [line.strip() for line in source.allowed_ips.splitlines() if line.strip()]
    if not entries:
        return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            # An unreadable entry matches nothing: the list still restricts (fails closed).
            logger.warning("source %s: unreadable allow list entry %r", source.slug, entry)
    return False


def receive(slug: str, incoming: Incoming) -> Outcome:
    """Verify and store one request's event (the plain view; the fast path stores in batches),
    with the receive path's bounds on every statement."""
    checked = None
    try:
        with bounded_transaction():
            checked = verify(slug, incoming)
            if isinstance(checked, Outcome):
                return checked
            (event_id,) = insert_events([checked.event])
    except IntegrityError as exc:
        if checked is None:
            raise
        return not_stored(checked, exc)
    return stored(checked, event_id)


@dataclass(frozen=True)
class Verified:
    """A verified event still to be stored, and what answering it needs once it is."""

    slug: str
    provider: Provider
    event: NewEvent
    remote_addr: str = ""


def verify(slug: str, incoming: Incoming) -> Outcome | Verified:
    """The refusal, or the verified event ready for the database.

    The fast path (receivers.fastpath) calls it by itself and stores its events in batches."""
    found = cached_source(slug)
    size = len(incoming.body)
    if found is None:
        refuse(RefusalReason.UNKNOWN_SOURCE, slug, None, incoming.remote_addr, size)
        return NOT_FOUND
    source, secrets = found
    provider = get_provider(source.provider)
    refused = unauthentic(slug, source, provider, secrets, incoming)
    if refused is not None:
        reason, detail = refused
        # Logged as often as recorded: a flood of bad requests cannot flood the log either.
        if refuse(reason, slug, source.pk, incoming.remote_addr, size, detail):
            logger.warning("source %s refused: %s", slug, detail, extra={"source": slug})
        return UNAUTHORIZED

    try:
        payload = load_json(incoming.body)
        parsed = provider.parse(payload, incoming)
    except BadPayload as exc:
        refuse(RefusalReason.BAD_PAYLOAD, slug, source.pk, incoming.remote_addr, size, str(exc))
        return Outcome(400, {"error": str(exc)})
    if not sendable_header_value(parsed.type):
        # Relayed as the x-hub-event-type header, such a type would fail every attempt.
        detail = BAD_TYPE.body["error"]
        refuse(RefusalReason.BAD_PAYLOAD, slug, source.pk, incoming.remote_addr, size, detail)
        return BAD_TYPE

    secret_headers = provider.credential_headers(source)
    event = NewEvent(
        source_id=source.pk,
        external_id=(parsed.external_id or hashlib.sha256(incoming.body).hexdigest())[:255],
        type=parsed.type[:255],
        occurred_at=parsed.occurred_at,
        received_at=timezone.now(),
        headers=masked_headers(dict(incoming.headers), secret_headers),
        raw_body=incoming.body,
        payload=payload,
        is_test=parsed.is_test,
        status=EventStatus.IGNORED if parsed.is_test else EventStatus.PENDING,
    )
    return Verified(slug, provider, event, incoming.remote_addr)


def unauthentic(
    slug: str, source: Source, provider: Provider, secrets: list[str], incoming: Incoming
) -> tuple[str, str] | None:
    """Why the request is refused as unauthentic, as a reason and a detail for the operator
    (recorded and logged, never told the caller), or None."""
    if not ip_allowed(source, incoming.remote_addr):
        return RefusalReason.IP_NOT_ALLOWED, f"{incoming.remote_addr} is not on the allow list"
    if source.verify_nothing and not provider.internal:
        return None
    try:
        if not secrets:
            raise VerificationFailed("the source has no active secret")
        provider.verify(incoming, secrets, source)
    except StaleTimestamp as exc:
        return RefusalReason.STALE_TIMESTAMP, str(exc)
    except VerificationFailed as exc:
        return RefusalReason.SIGNATURE, str(exc)
    return None


def stored(verified: Verified, event_id: int | None) -> Outcome:
    """The answer for an event now in the database; None as its id means a duplicate."""
    metrics.stored(verified.slug, duplicate=event_id is None)
    if event_id is None:
        # The platform retried or delivered twice: stored once, counted, answered the same.
        return success(verified.provider, None, duplicate=True)
    if not verified.event.is_test:
        event_stored.send(Event, event_id=event_id)
    return success(verified.provider, event_id, duplicate=False)


def not_stored(verified: Verified, exc: IntegrityError) -> Outcome:
    """The cached source was deleted a moment ago: 404. Anything else is a bug: re-raised."""
    forget_sources()
    if find_source(verified.slug) is None:
        size = len(verified.event.raw_body)
        refuse(RefusalReason.UNKNOWN_SOURCE, verified.slug, None, verified.remote_addr, size)
        return NOT_FOUND
    raise exc


NOT_STORABLE = "The body holds NaN, Infinity, NUL characters or unpaired surrogates."
# Real payloads nest under 20 levels; far deeper ones exhaust the recursion limit of whatever
# encodes them next (the INSERT, the API, the admin).
MAX_DEPTH = 64
TOO_DEEP = f"The body nests deeper than {MAX_DEPTH} levels."


class NotStorable(ValueError):
    """A JSON value PostgreSQL's jsonb cannot hold."""


def reject_constant(name: str) -> float:
    raise NotStorable(name)


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStorable(text)
    return value


# NaN, Infinity and numbers too large for a float are refused while parsing.
decode_json = json.JSONDecoder(parse_constant=reject_constant, parse_float=finite_float).decode


def load_json(body: bytes) -> Any:
    """The parsed body, refusing what json.loads accepts but the database cannot store."""
    try:
        # What json.loads does with bytes, with the decoder above.
        payload = decode_json(body.decode(json.detect_encoding(body), "surrogatepass"))
    except NotStorable:
        raise BadPayload(NOT_STORABLE)
    except RecursionError:
        raise BadPayload(TOO_DEEP)
    except ValueError:
        # Also UnicodeDecodeError and integers with too many digits.
        raise BadPayload("The body is not valid JSON.")
    # Fewer brackets than the cap cannot nest deeper than it: most bodies stop here.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and nesting(payload) > MAX_DEPTH:
        raise BadPayload(TOO_DEEP)
    # A NUL character or an unpaired surrogate in an ASCII body can only come from a \u
    # escape: without one, there is nothing left to look for.
    if (not body.isascii() or b"\\u" in body) and not storable(payload):
        raise BadPayload(NOT_STORABLE)
    return payload


def nesting(payload: Any) -> int:
    """How deep arrays and objects nest in payload (walked without recursion), counted up to
    one past MAX_DEPTH."""
    deepest = 0
    pending = [(payload, 1)] if isinstance(payload, dict | list) else []
    while pending and deepest <= MAX_DEPTH:
        value, level = pending.pop()
        deepest = max(deepest, level)
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def readable_payload(event) -> Any:
    """The event's payload, or None for one stored before MAX_DEPTH was enforced that nests
    too deep to be read or encoded again inside a request (the raw body still has it)."""
    try:
        payload = event.payload
    except RecursionError:
        return None
    return None if nesting(payload) > MAX_DEPTH else payload


def storable(payload: Any) -> bool:
    """False for values PostgreSQL's jsonb (and SQLite's JSON check) reject."""
    pending = [payload]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if not storable_text(value):
                return False
        elif isinstance(value, float):
            if not math.isfinite(value):
                return False
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return True


def success(provider, event_id: int | None, duplicate: bool) -> Outcome:
    body = None if provider.empty_success_body else {"received": True, "duplicate": duplicate}
    return Outcome(200, body, event_id=event_id, duplicate=duplicate)
