"""receivers' event page, with what relaying adds: the event's deliveries with their attempts,
and "Replay failed" (a button, a URL and a list action). Registered in place of receivers' own.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from receivers.admin import event_admin as receivers_event_admin
from receivers.admin.lists import object_or_404
from receivers.models import Event

from .. import selectors
from ..models import DeliveryStatus
from ..selectors import failed_delivery_ids
from .replays import ReplayPermissionMixin, can_replay, deliveries_text, queue_and_report

admin.site.unregister(Event)


@admin.register(Event)
class EventAdmin(ReplayPermissionMixin, receivers_event_admin.EventAdmin):
    change_form_template = "admin/subscriptions/event/change_form.html"
    actions = ["replay_failed_deliveries"]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        event = self.get_object(request, object_id)
        deliveries = selectors.event_deliveries(event) if event is not None else []
        extra_context = {
            **(extra_context or {}),
            "deliveries": deliveries,
            "failed_count": sum(d.status == DeliveryStatus.FAILED for d in deliveries),
            "can_replay": can_replay(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(
        description="Replay the failed deliveries of the selected events", permissions=["replay"]
    )
    def replay_failed_deliveries(self, request, queryset):
        ids = failed_delivery_ids(event__in=queryset.values("pk"))
        queue_and_report(request, self, ids, failed=True)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replay-failed/",
                self.admin_site.admin_view(require_POST(self.replay_failed_view)),
                name="receivers_event_replay_failed",
            ),
            *super().get_urls(),
        ]

    def replay_failed_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not can_replay(request):
            raise PermissionDenied
        event = object_or_404(self, request, object_id)
        count = queue_and_report(request, self, failed_delivery_ids(event=event), failed=True)
        self.log_change(request, event, f"Replayed {deliveries_text(count, failed=True)}.")
        return HttpResponseRedirect(reverse("admin:receivers_event_change", args=[event.pk]))
