"""Admin for alerts: what the hub raised about itself, open ones first (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F

from receivers.admin.lists import HistoryAdminMixin

from ..models import Alert


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "open"), ("no", "cleared")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(cleared_at=None)
        if self.value() == "no":
            return queryset.exclude(cleared_at=None)
        return queryset


@admin.register(Alert)
class AlertAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ["opened", "kind", "message", "cleared"]
    list_filter = [OpenFilter, "kind"]
    list_select_related = ["subscription", "source"]
    fields = ["kind", "message", "subscription", "source", "opened", "cleared", "event"]
    readonly_fields = fields

    def get_queryset(self, request):
        # Open ones first, then the newest.
        return (
            super()
            .get_queryset(request)
            .order_by(F("cleared_at").desc(nulls_first=True), "-opened_at")
        )

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, alert: Alert) -> str:
        return f"{alert.opened_at:%Y-%m-%d %H:%M:%S} UTC"

    @admin.display(description="cleared", ordering="cleared_at")
    def cleared(self, alert: Alert) -> str:
        return f"{alert.cleared_at:%Y-%m-%d %H:%M:%S} UTC" if alert.cleared_at else "open"
