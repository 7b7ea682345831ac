"""Admin for deliveries: filters, search by webhook or event id, attempts inline, replay."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from receivers.admin.lists import HistoryAdminMixin, ScaledListMixin, object_or_404

from ..models import OPEN_STATUSES, Attempt, Delivery
from .replays import ReplayPermissionMixin, can_replay, queue_and_report

LAST_ERROR_SHOWN = 80


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    fields = ["started_at", "status_code", "duration_ms", "error", "answer", "is_replay"]
    readonly_fields = fields
    ordering = ["started_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="answer")
    def answer(self, attempt: Attempt) -> str:
        text = attempt.response_excerpt
        if not text:
            return "-"
        return format_html(
            '<details><summary>{}</summary><pre class="hub-json">{}</pre></details>',
            text[:60] + ("…" if len(text) > 60 else ""),
            text,
        )


@admin.register(Delivery)
class DeliveryAdmin(ReplayPermissionMixin, HistoryAdminMixin, ScaledListMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "event_link",
        "subscription",
        "status",
        "attempt_count",
        "next_attempt",
        "last_status",
        "last_error_excerpt",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "subscription"]
    list_select_related = ["event__source", "subscription"]
    list_deferred = ("event__raw_body", "event__payload", "event__headers")
    list_per_page = 50
    # The primary key follows creation order and every filter's index ends with it.
    ordering = ["-id"]
    sortable_by = ["id"]
    search_fields = ["webhook_id", "event__external_id"]
    search_help_text = "A webhook id (msg_…) or the event id as the platform sent it."
    actions = ["replay_selected"]
    inlines = [AttemptInline]
    fields = [
        "event_link",
        "subscription_link",
        "status",
        "webhook_id",
        ("attempt_count", "last_status_code"),
        "last_error",
        ("created_at", "next_attempt_at", "delivered_at"),
        ("order_key", "coalesce_key", "expires_at"),
    ]
    readonly_fields = [
        "order_key",
        "coalesce_key",
        "expires_at",
        "event_link",
        "subscription_link",
        "status",
        "webhook_id",
        "attempt_count",
        "last_status_code",
        "last_error",
        "created_at",
        "next_attempt_at",
        "delivered_at",
    ]

    def get_search_results(self, request, queryset, search_term):
        # One indexed lookup, not an OR across a join that no index can serve.
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("msg_"):
            return queryset.filter(webhook_id=term), False
        return queryset.filter(event__external_id=term), False

    @admin.display(description="event")
    def event_link(self, delivery: Delivery) -> str:
        event = delivery.event
        return format_html(
            '<a href="{}">{}</a><br><span class="quiet">{} · {}</span>',
            reverse("admin:receivers_event_change", args=[event.pk]),
            event.external_id,
            event.source.slug,
            event.type,
        )

    @admin.display(description="subscription")
    def subscription_link(self, delivery: Delivery) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:subscriptions_subscription_change", args=[delivery.subscription_id]),
            delivery.subscription,
        )

    @admin.display(description="next attempt")
    def next_attempt(self, delivery: Delivery) -> str:
        if delivery.status not in OPEN_STATUSES:
            return "-"
        when = timezone.localtime(delivery.next_attempt_at)
        return formats.date_format(when, "DATETIME_FORMAT")

    @admin.display(description="last status")
    def last_status(self, delivery: Delivery) -> str:
        return f"HTTP {delivery.last_status_code}" if delivery.last_status_code else "-"

    @admin.display(description="last error")
    def last_error_excerpt(self, delivery: Delivery) -> str:
        return (
            Truncator(delivery.last_error).chars(LAST_ERROR_SHOWN) if delivery.last_error else "-"
        )

    @admin.action(description="Replay the selected deliveries", permissions=["replay"])
    def replay_selected(self, request, queryset):
        queue_and_report(request, self, list(queryset.values_list("pk", flat=True)))

    def get_urls(self):
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(require_POST(self.replay_view)),
                name="subscriptions_delivery_replay",
            ),
            *super().get_urls(),
        ]

    def replay_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not can_replay(request):
            raise PermissionDenied
        delivery = object_or_404(self, request, object_id)
        queue_and_report(request, self, [delivery.pk])
        return HttpResponseRedirect(
            reverse("admin:subscriptions_delivery_change", args=[delivery.pk])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_replay": can_replay(request)}
        return super().change_view(request, object_id, form_url, extra_context)
