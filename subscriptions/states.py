"""A subscription's state in plain words, for the admin's pages and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import formats, timezone
from django.utils.timesince import timesince

from .models import Subscription

# Under this, "for 0 minutes" would say nothing: the wording says "under a minute" instead.
ONE_MINUTE = timedelta(minutes=1)
# The colour of each kind of state, from the styles in templates/admin/base_site.html.
CSS_CLASSES = {
    "active": "hub-ok",
    "failing": "hub-warning",
    "paused": "hub-warning",
    "disabled": "hub-bad",
}


@dataclass(frozen=True)
class State:
    kind: str  # active, failing, paused or disabled
    text: str

    @property
    def css_class(self) -> str:
        return CSS_CLASSES[self.kind]


def moment(value: datetime | None) -> str:
    """A time as the admin shows times: with seconds and the time zone."""
    if value is None:
        return "an unknown time"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def duration(since: datetime, now: datetime) -> str:
    return "under a minute" if now - since < ONE_MINUTE else timesince(since, now)


def failures(count: int) -> str:
    return f"{count} failure{'' if count == 1 else 's'} in a row"


def state_of(sub: Subscription, now: datetime | None = None) -> State:
    now = now or timezone.now()
    if sub.is_paused:
        by = (sub.disabled_reason or "Paused").rstrip(".")
        return State("paused", f"{by} on {moment(sub.disabled_at)}; deliveries wait")
    if not sub.is_active:
        reason = sub.disabled_reason or "Stopped."
        return State("disabled", f"disabled on {moment(sub.disabled_at)}: {reason}")
    if sub.consecutive_failures:
        since = sub.failing_since or sub.last_failure_at or now
        return State(
            "failing",
            f"failing since {moment(since)} ({duration(since, now)}, "
            f"{failures(sub.consecutive_failures)})",
        )
    return State("active", "active")
