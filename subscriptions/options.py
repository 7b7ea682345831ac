"""A subscription's energy options (docs/energy.md): what is checked when it is saved, and what
a fan-out computes once per delivery.

- `filter`: rules on the payload (subscriptions/filters.py); an event that fails one is not
  relayed to the subscription;
- `ordering_key`: a path whose value orders deliveries (same value: received order);
- `coalesce`: rules `{"types": [...], "key": path}`; of the waiting deliveries with the same
  key only the newest is sent;
- `expire_after` and `expire_after_by_type`: how old an event may get before its delivery is
  no longer worth sending.

None of this touches the database: the models validate with it, the services store its keys.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError

from . import filters, jsonpaths

# A year: longer than any retention, so "never" needs no special value.
MAX_EXPIRE_SECONDS = 365 * 24 * 3600
MAX_COALESCE_RULES = 10
MAX_EXPIRY_RULES = 50


def validate_path(value: str) -> None:
    if value:
        try:
            jsonpaths.parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc))


def validate_filter(value: object) -> None:
    try:
        filters.parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc))


def coalesce_rule(rule: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(type patterns, key path segments) of one coalescing rule; ValueError when invalid."""
    if not isinstance(rule, dict) or set(rule) != {"types", "key"}:
        raise ValueError('each rule is {"types": ["ev/measurement"], "key": "data.applianceID"}')
    types = rule["types"]
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
        raise ValueError("'types' is a non-empty list of event types or globs")
    return tuple(types), jsonpaths.parse(rule["key"])


def parse_coalesce(value: object) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    if value in (None, []):
        return []
    if not isinstance(value, list):
        raise ValueError("coalescing is a list of rules")
    if len(value) > MAX_COALESCE_RULES:
        raise ValueError(f"at most {MAX_COALESCE_RULES} coalescing rules")
    parsed = []
    for number, rule in enumerate(value, start=1):
        try:
            parsed.append(coalesce_rule(rule))
        except ValueError as exc:
            raise ValueError(f"rule {number}: {exc}")
    return parsed


def validate_coalesce(value: object) -> None:
    try:
        parse_coalesce(value)
    except ValueError as exc:
        raise ValidationError(str(exc))


def validate_expiry_by_type(value: object) -> None:
    if value in (None, {}):
        return
    if not isinstance(value, dict):
        raise ValidationError('an object of event type (or glob) to seconds: {"ev/*": 300}')
    if len(value) > MAX_EXPIRY_RULES:
        raise ValidationError(f"at most {MAX_EXPIRY_RULES} event types")
    for pattern, seconds in value.items():
        if not pattern:
            raise ValidationError("an event type (or glob) may not be empty")
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise ValidationError(f"{pattern}: seconds must be a whole number")
        if not 1 <= seconds <= MAX_EXPIRE_SECONDS:
            raise ValidationError(f"{pattern}: seconds must be from 1 to {MAX_EXPIRE_SECONDS}")


def matches_any(event_type: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in patterns)


@dataclass(frozen=True)
class Stamp:
    """What a fan-out stores on a delivery for the options (empty: a plain delivery)."""

    order_key: str = ""
    coalesce_key: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """A subscription's options, parsed once per fan-out."""

    rules: list[filters.Rule]
    order_path: tuple[str, ...] | None
    coalesce: list[tuple[tuple[str, ...], tuple[str, ...]]]
    expire_after: int | None
    expire_after_by_type: dict[str, int]
    # A subscription whose stored options no longer parse gets nothing rather than everything.
    refuse: bool = False

    @property
    def stamps(self) -> bool:
        return bool(self.order_path or self.coalesce or self.expires)

    @property
    def expires(self) -> bool:
        return bool(self.expire_after or self.expire_after_by_type)

    def admits(self, event) -> bool:
        """The filter's verdict; the payload is read only when there are rules."""
        if self.refuse:
            return False
        return not self.rules or filters.passes(self.rules, event.payload)

    def expiry_seconds(self, event_type: str) -> int | None:
        """The shortest of the matching per-type times, else the subscription's own."""
        matching = [
            seconds
            for pattern, seconds in self.expire_after_by_type.items()
            if fnmatch.fnmatchcase(event_type, pattern)
        ]
        return min(matching) if matching else self.expire_after

    def stamp(self, event) -> Stamp:
        """An event's keys and deadline for this subscription (event: type, payload, times)."""
        order_key = coalesce_key = ""
        expires_at = None
        if self.order_path:
            order_key = jsonpaths.key_of(jsonpaths.lookup(event.payload, self.order_path))
        for number, (types, path) in enumerate(self.coalesce):
            if matches_any(event.type, types):
                value = jsonpaths.lookup(event.payload, path)
                coalesce_key = jsonpaths.key_of(value, prefix=f"{number}:")
                break
        if self.expires:
            seconds = self.expiry_seconds(event.type)
            if seconds:
                expires_at = event_time(event) + timedelta(seconds=seconds)
        return Stamp(order_key, coalesce_key, expires_at)


def event_time(event) -> datetime:
    """When the event happened: the platform's time, unless it is later than our receipt
    (a sender's clock ahead of ours must not make an event live longer)."""
    if event.occurred_at is not None and event.occurred_at < event.received_at:
        return event.occurred_at
    return event.received_at


def plan_of(sub) -> Plan | None:
    """The subscription's options, or None when it has none (a plain subscription); ValueError
    when stored options do not parse (they are checked when saved, not when written by hand)."""
    if not (
        sub.filter
        or sub.ordering_key
        or sub.coalesce
        or sub.expire_after
        or sub.expire_after_by_type
    ):
        return None
    try:
        validate_expiry_by_type(sub.expire_after_by_type)
    except ValidationError as exc:
        raise ValueError("; ".join(exc.messages))
    return Plan(
        rules=filters.parse(sub.filter),
        order_path=jsonpaths.parse(sub.ordering_key) if sub.ordering_key else None,
        coalesce=parse_coalesce(sub.coalesce),
        expire_after=sub.expire_after,
        expire_after_by_type=dict(sub.expire_after_by_type or {}),
    )


def event_fields(plans: list[Plan]) -> list[str]:
    """The Event columns a fan-out must read for these plans, beyond the plain ones."""
    fields = []
    if any(plan.rules or plan.order_path or plan.coalesce for plan in plans):
        fields.append("payload")
    if any(plan.expires for plan in plans):
        fields += ["occurred_at", "received_at"]
    return fields
