"""A subscription's state in plain words, for the admin's pages and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from receivers.timetext import duration, moment

from .models import Subscription

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
