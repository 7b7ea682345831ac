"""What a source has been doing, on its admin pages: its last event (silent or not, with what
the platform does to a failing webhook) and the requests refused (receivers/activity.py)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .. import activity
from ..models import RefusalReason, Source
from ..timetext import ago, moment

RECENT_SHOWN = 10


def refusals_url(source: Source) -> str:
    return reverse("admin:receivers_refusal_changelist") + f"?source__id__exact={source.pk}"


class SourceActivityMixin:
    """Columns and read-only fields for SourceAdmin; its queryset carries with_activity()."""

    activity_columns = ("last_event", "refused_day", "last_refusal")
    activity_fields = ("event_activity", "refusal_activity")

    def has_change_permission(self, request, obj=None):
        # The hub's own source is the hub's: nothing of it is edited, rotated or deleted.
        if obj is not None and obj.is_internal:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_internal:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="last event", ordering="last_event_at")
    def last_event(self, source: Source) -> str:
        silent = activity.silent_since(source, source.last_event_at, timezone.now())
        if silent is not None:
            return format_html('<span class="hub-bad">silent</span> {}', ago(source.last_event_at))
        return ago(source.last_event_at)

    @admin.display(description="refused (24 h)", ordering="refused_day")
    def refused_day(self, source: Source) -> str:
        if not source.refused_day:
            return "0"
        return format_html('<a href="{}">{}</a>', refusals_url(source), source.refused_day)

    @admin.display(description="last refusal", ordering="last_refusal_at")
    def last_refusal(self, source: Source) -> str:
        if source.last_refusal_at is None:
            return "-"
        return f"{ago(source.last_refusal_at)}: {RefusalReason(source.last_refusal_reason).label}"

    @admin.display(description="last event")
    def event_activity(self, source: Source) -> str:
        now = timezone.now()
        when = "nothing received yet"
        if source.last_event_at:
            when = f"{ago(source.last_event_at)} ({moment(source.last_event_at)})"
        if source.expected_interval is None:
            return f"{when}. No expected interval: never flagged silent."
        silent = activity.silent_since(source, source.last_event_at, now)
        if silent is None:
            return f"{when}. Expected at least every {source.expected_interval}."
        note = activity.Silence(source, silent).note
        return format_html(
            '{}. <span class="hub-bad">Silent: nothing for more than {}.</span> {}',
            when,
            source.expected_interval,
            note,
        )

    @admin.display(description="refused requests")
    def refusal_activity(self, source: Source) -> SafeString | str:
        recent = activity.recent_refusals(source, RECENT_SHOWN)
        if not recent:
            return "None recorded."
        dropped = activity.dropped_day(source, timezone.now())
        cap = settings.HUB_REFUSALS_PER_MINUTE
        over = f" ({dropped} not stored: over {cap} a minute)" if dropped else ""
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (moment(r.at), r.get_reason_display(), r.detail, r.remote_addr or "-", r.body_size)
                for r in recent
            ),
        )
        return format_html(
            '{} in the last 24 hours{}; <a href="{}">all refusals of this source</a>.'
            '<table class="hub-refusals"><thead><tr><th>time</th><th>reason</th><th>why</th>'
            "<th>from</th><th>bytes</th></tr></thead><tbody>{}</tbody></table>",
            source.refused_day,
            over,
            refusals_url(source),
            rows,
        )
