"""Times in words for the admin's pages: one format with seconds and the time zone, and "ago"
that never reads "0 minutes ago"."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import formats, timezone
from django.utils.timesince import timesince

# Under a minute Django's timesince says "0 minutes": say "under a minute" instead.
ONE_MINUTE = timedelta(minutes=1)


def moment(value: datetime | None) -> str:
    """A time as the admin shows times (hub/formats/): 2026-03-02 08:15:30 UTC."""
    if value is None:
        return "an unknown time"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def duration(since: datetime, now: datetime | None = None) -> str:
    now = now or timezone.now()
    return "under a minute" if now - since < ONE_MINUTE else timesince(since, now)


def ago(value: datetime | None) -> str:
    return f"{duration(value)} ago" if value else "never"
