"""Admin for the read-only event history, fast on millions of rows: type choices from an index
skip-scan, sorting only on the indexed column, the big columns deferred.

What relaying adds to an event's page (its deliveries, "Replay failed") is registered by
subscriptions/admin/event_admin.py.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from .. import payload_search
from ..masking import shown_headers
from ..models import Event
from .lists import HistoryAdminMixin, ScaledListMixin, distinct_values


class EventTypeFilter(admin.SimpleListFilter):
    title = "type"
    parameter_name = "type"
    limit = 200

    def lookups(self, request, model_admin):
        types = distinct_values(Event, "type", self.limit)
        if self.value() and self.value() not in types:
            types.append(self.value())
        return [(value, value) for value in types]

    def queryset(self, request, queryset):
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Event)
class EventAdmin(HistoryAdminMixin, ScaledListMixin, admin.ModelAdmin):
    list_display = [
        "received_at",
        "source",
        "type",
        "external_id",
        "relay_status",
        "is_test",
        "duplicates",
    ]
    list_display_links = ["received_at", "external_id"]
    list_filter = [
        "source",
        EventTypeFilter,
        "status",
        "is_test",
        ("received_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["source"]
    list_deferred = ("raw_body", "payload", "headers")
    list_per_page = 50
    # Only the indexed ordering: sorting a million rows by another column is a full sort.
    sortable_by = ["received_at"]
    search_fields = ["external_id__exact"]
    search_help_text = (
        "The event id exactly as the platform sent it, or path=value inside the payload: "
        'data.applianceID=fc0a…, payload[].meter_id=65f1…, data.code="42" (a string only); '
        "several, separated by spaces, must all match."
    )
    fieldsets = [
        (
            None,
            {
                "fields": (
                    ("source", "type"),
                    ("external_id", "relay_status"),
                    ("received_at", "occurred_at"),
                    ("is_test", "duplicates", "body_size"),
                )
            },
        ),
        ("Payload", {"fields": ("pretty_payload",)}),
        ("Headers (credentials masked)", {"fields": ("header_table",)}),
    ]
    readonly_fields = [
        "source",
        "type",
        "external_id",
        "relay_status",
        "received_at",
        "occurred_at",
        "is_test",
        "duplicates",
        "body_size",
        "pretty_payload",
        "header_table",
    ]

    def get_queryset(self, request):
        # The page shows the raw body; a payload stored before bodies were capped may nest
        # too deep to decode inside a request.
        return super().get_queryset(request).defer("payload")

    def get_search_results(self, request, queryset, search_term):
        if not payload_search.is_payload_search(search_term):
            return super().get_search_results(request, queryset, search_term)
        try:
            terms = payload_search.parse_admin_search(search_term)
        except payload_search.PayloadSearchError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return queryset.none(), False
        return payload_search.matching(queryset, terms), False

    @admin.display(description="status")
    def relay_status(self, event: Event) -> str:
        return event.status_text

    @admin.display(description="body")
    def body_size(self, event: Event) -> str:
        return f"{len(event.raw_body):,} bytes"

    @admin.display(description="payload")
    def pretty_payload(self, event: Event) -> str:
        return format_html('<pre class="hub-json">{}</pre>', pretty_body(event))

    @admin.display(description="headers")
    def header_table(self, event: Event) -> str:
        rows = sorted(shown_headers(event).items())
        if not rows:
            return "none"
        body = format_html_join("", "<tr><th>{}</th><td><code>{}</code></td></tr>", rows)
        return format_html('<table class="hub-headers">{}</table>', body)


def pretty_body(event: Event) -> str:
    """The body as received, indented: parsed from the raw bytes, since a JSON column (jsonb)
    does not keep the sender's key order."""
    raw = bytes(event.raw_body)
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # Not JSON, or (stored before bodies were capped) nested too deep to indent here.
        return raw.decode("utf-8", "replace")
