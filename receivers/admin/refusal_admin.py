"""Admin for refused requests: a read-only record, filtered by source, reason and day."""

from __future__ import annotations

from django.contrib import admin

from ..models import Refusal
from .lists import HistoryAdminMixin, ScaledListMixin


@admin.register(Refusal)
class RefusalAdmin(HistoryAdminMixin, ScaledListMixin, admin.ModelAdmin):
    list_display = ["at_seconds", "slug", "source", "reason", "detail", "remote_addr", "body_size"]
    list_filter = ["reason", "at", "source"]
    search_fields = ["=slug", "=remote_addr"]
    list_select_related = ["source"]

    @admin.display(description="time", ordering="at")
    def at_seconds(self, refusal: Refusal) -> str:
        return f"{refusal.at:%Y-%m-%d %H:%M:%S} UTC"
