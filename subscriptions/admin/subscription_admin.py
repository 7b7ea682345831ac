"""Admin for subscriptions: create and edit, health at a glance, and the operations (pause,
resume, rotate the signing secret, send a test event, replay the failed deliveries)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from receivers.admin.lists import object_or_404
from receivers.models import mask
from receivers.timetext import ago, moment

from .. import filters, selectors
from ..models import HEALTH_FIELDS, Priority, Subscription
from ..selectors import failed_delivery_ids
from ..sender import Result
from ..services import controls, fanout
from ..services.fanout import STAMPED_OPTIONS
from ..states import state_of
from .backfill_admin import backfill_view, can_backfill
from .forms import EDITABLE_FIELDS, ENERGY_FIELDS, RotateSigningSecretForm, SubscriptionForm
from .replays import ReplayPermissionMixin, can_replay, deliveries_text, queue_and_report

EXCERPT_SHOWN = 300
ENERGY_HELP = (
    "Each is off until set; docs/energy.md says when to use which, with the platforms' own "
    "event types. A filter applies to events fanned out after it is saved; the other options "
    "also to the deliveries still waiting."
)


def deliveries_url(sub: Subscription, **filters: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"subscription__id__exact": sub.pk, **filters}.items())
    return f"{reverse('admin:subscriptions_delivery_changelist')}?{query}"


@admin.register(Subscription)
class SubscriptionAdmin(ReplayPermissionMixin, admin.ModelAdmin):
    form = SubscriptionForm
    list_display = [
        "name",
        "url",
        "state",
        "last_success",
        "failures",
        "backlog",
        "options",
        "masked_secret",
    ]
    list_filter = ["is_active", "is_paused", "priority", "payload_format"]
    search_fields = ["name", "url"]
    filter_horizontal = ["sources"]
    actions = [
        "pause_selected",
        "resume_selected",
        "rotate_signing_secrets",
        "send_test_events",
        "replay_failed_deliveries",
        "send_stored_events",
    ]
    fieldsets = [
        (
            None,
            {"fields": EDITABLE_FIELDS},
        ),
        ("Energy options", {"fields": ENERGY_FIELDS, "description": ENERGY_HELP}),
        ("Signing", {"fields": ("masked_secret", "previous_secret_state")}),
        (
            "Health",
            {
                "fields": (
                    "state",
                    ("last_success_at", "last_failure_at"),
                    "consecutive_failures",
                    "backoff_until",
                    "backlog",
                )
            },
        ),
    ]
    readonly_fields = [
        "filter_rules",
        "masked_secret",
        "previous_secret_state",
        "state",
        *HEALTH_FIELDS,
        "backoff_until",
        "backlog",
    ]

    def get_queryset(self, request):
        return selectors.with_backlog(super().get_queryset(request))

    def get_fieldsets(self, request, obj=None):
        # Health first on an existing subscription: it is what an operator comes to see.
        main, energy, signing, health = self.fieldsets
        return [main, energy] if obj is None else [health, main, energy, signing]

    def get_changeform_initial_data(self, request):
        return {"event_types": "*", **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and set(STAMPED_OPTIONS) & set(form.changed_data):
            count = fanout.restamp_waiting(obj)
            if count:
                self.message_user(
                    request,
                    f"The new options apply to the {count} waiting deliveries too.",
                    messages.INFO,
                )
        if not change:
            self.message_user(
                request,
                format_html(
                    "Signing secret of {}, shown once, copy it now: <code>{}</code>",
                    obj.name,
                    obj.secret,
                ),
                messages.WARNING,
            )

    # Health at a glance

    @admin.display(description="state")
    def state(self, sub: Subscription) -> str:
        state = state_of(sub)
        return format_html('<span class="{}">{}</span>', state.css_class, state.text)

    @admin.display(description="last success", ordering="last_success_at")
    def last_success(self, sub: Subscription) -> str:
        return ago(sub.last_success_at)

    @admin.display(description="failures in a row", ordering="consecutive_failures")
    def failures(self, sub: Subscription) -> int:
        return sub.consecutive_failures

    @admin.display(description="waiting deliveries")
    def backlog(self, sub: Subscription) -> str:
        return format_html(
            '<a href="{}">{}</a>', deliveries_url(sub), getattr(sub, "open_count", 0)
        )

    @admin.display(description="energy options")
    def options(self, sub: Subscription) -> str:
        return " · ".join(options_summary(sub)) or "-"

    @admin.display(description="filter, as rules")
    def filter_rules(self, sub: Subscription) -> str:
        rules = filters.describe(sub.filter)
        if not rules:
            return "none: every event of the chosen types and sources"
        return format_html_join(mark_safe("<br>and "), "<code>{}</code>", ((r,) for r in rules))

    @admin.display(description="signing secret")
    def masked_secret(self, sub: Subscription) -> str:
        return sub.masked_secret

    @admin.display(description="previous secret")
    def previous_secret_state(self, sub: Subscription) -> str:
        if not sub.previous_secret or len(sub.signing_secrets()) < 2:
            return "none"
        expires = sub.previous_secret_expires_at
        until = f"until {moment(expires)}" if expires else "until it is removed"
        return f"{mask(sub.previous_secret)} also signs {until}"

    # Operations: the actions on the list and the buttons on the page share these.

    def do_pause(self, request: HttpRequest, queryset) -> None:
        count = controls.pause(queryset, reason=f"Paused by {request.user}")
        self.message_user(request, f"Paused {count} subscription(s).", messages.SUCCESS)

    def do_resume(self, request: HttpRequest, queryset) -> None:
        count = controls.resume(queryset)
        self.message_user(
            request,
            f"Resumed {count} subscription(s); waiting deliveries go first.",
            messages.SUCCESS,
        )

    def do_rotate(
        self, request: HttpRequest, sub: Subscription, hours: int = controls.SIGNING_GRACE_HOURS
    ) -> None:
        secret = controls.rotate_signing_secret(sub, grace_hours=hours)
        self.log_change(
            request, sub, f"Rotated the signing secret; the previous one signs for {hours} hours."
        )
        self.message_user(
            request,
            format_html(
                "New signing secret of {}, shown once, copy it now: <code>{}</code> "
                "(the previous one also signs for {} hours)",
                sub.name,
                secret,
                hours,
            ),
            messages.WARNING,
        )

    def do_test(self, request: HttpRequest, sub: Subscription) -> None:
        result = controls.send_test_event(sub)
        self.message_user(request, describe_test(sub, result), result_level(result))

    def do_replay_failed(self, request: HttpRequest, sub: Subscription) -> int:
        count = queue_and_report(request, self, failed_delivery_ids(subscription=sub), failed=True)
        self.log_change(request, sub, f"Replayed {deliveries_text(count, failed=True)}.")
        return count

    @admin.action(description="Pause the selected subscriptions", permissions=["change"])
    def pause_selected(self, request, queryset):
        self.do_pause(request, queryset)

    @admin.action(description="Resume the selected subscriptions", permissions=["change"])
    def resume_selected(self, request, queryset):
        self.do_resume(request, queryset)

    @admin.action(description="Rotate the signing secret", permissions=["change"])
    def rotate_signing_secrets(self, request, queryset):
        for sub in queryset:
            self.do_rotate(request, sub)

    @admin.action(description="Send a test event (ping)", permissions=["change"])
    def send_test_events(self, request, queryset):
        for sub in queryset:
            self.do_test(request, sub)

    @admin.action(description="Replay the failed deliveries", permissions=["replay"])
    def replay_failed_deliveries(self, request, queryset):
        for sub in queryset:
            self.do_replay_failed(request, sub)

    @admin.action(
        description="Send stored events to the subscription (backfill)…", permissions=["backfill"]
    )
    def send_stored_events(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose one subscription to send events to.", messages.ERROR)
            return None
        url = reverse("admin:subscriptions_subscription_backfill", args=[queryset.get().pk])
        return HttpResponseRedirect(url)

    def has_backfill_permission(self, request) -> bool:
        return can_backfill(request)

    def send_events_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return backfill_view(self, request, object_id)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="subscriptions_subscription_rotate_secret",
            ),
            path(
                "<path:object_id>/backfill/",
                self.admin_site.admin_view(self.send_events_view),
                name="subscriptions_subscription_backfill",
            ),
            path(
                "<path:object_id>/<slug:operation>/run/",
                self.admin_site.admin_view(require_POST(self.operation_view)),
                name="subscriptions_subscription_operation",
            ),
            *super().get_urls(),
        ]

    def operation_view(self, request: HttpRequest, object_id: str, operation: str) -> HttpResponse:
        sub = object_or_404(self, request, object_id)
        queryset = Subscription.objects.filter(pk=sub.pk)
        operations_by_name = {
            "pause": lambda: self.do_pause(request, queryset),
            "resume": lambda: self.do_resume(request, queryset),
            "rotate-secret": lambda: self.do_rotate(request, sub),
            "send-test": lambda: self.do_test(request, sub),
            "replay-failed": lambda: self.do_replay_failed(request, sub),
        }
        if operation not in operations_by_name:
            raise Http404(f"No operation {operation!r}.")
        allowed = (
            can_replay(request)
            if operation == "replay-failed"
            else self.has_change_permission(request, sub)
        )
        if not allowed:
            raise PermissionDenied
        operations_by_name[operation]()
        return HttpResponseRedirect(
            reverse("admin:subscriptions_subscription_change", args=[sub.pk])
        )

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The confirmation page: what rotating does, for how long the old secret signs."""
        sub = object_or_404(self, request, object_id)
        if not self.has_change_permission(request, sub):
            raise PermissionDenied
        form = RotateSigningSecretForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            self.do_rotate(request, sub, form.cleaned_data["grace_hours"])
            return HttpResponseRedirect(
                reverse("admin:subscriptions_subscription_change", args=[sub.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate the signing secret of {sub.name}",
            "opts": self.opts,
            "original": sub,
            "form": form,
        }
        return TemplateResponse(
            request, "admin/subscriptions/subscription/rotate_secret.html", context
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        sub = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_replay": can_replay(request),
            "can_backfill": can_backfill(request),
            "failed_count": selectors.failed_count(sub) if sub else 0,
            "deliveries_url": deliveries_url(sub) if sub else "",
        }
        return super().change_view(request, object_id, form_url, extra_context)


def describe_test(sub: Subscription, result: Result) -> str:
    if result.status_code is None:
        outcome = f"no answer ({result.error})"
    else:
        outcome = f"HTTP {result.status_code} in {result.duration_ms} ms"
        if result.error:
            outcome += f" ({result.error})"
    answer = result.excerpt.strip()
    if len(answer) > EXCERPT_SHOWN:
        answer = answer[:EXCERPT_SHOWN] + "…"
    return f"Test event to {sub.name}: {outcome}." + (f" Answer: {answer}" if answer else "")


def result_level(result: Result) -> int:
    return messages.SUCCESS if result.succeeded else messages.ERROR


def options_summary(sub: Subscription) -> list[str]:
    """The options a subscription sets, one short phrase each, for the list."""
    parts = []
    if sub.priority != Priority.NORMAL:
        parts.append(f"{sub.priority} priority")
    if sub.filter:
        parts.append(f"filter: {len(sub.filter)} rule(s)")
    if sub.ordering_key:
        parts.append(f"ordered by {sub.ordering_key}")
    if sub.coalesce:
        parts.append("coalesced by " + ", ".join(rule["key"] for rule in sub.coalesce))
    if sub.expire_after:
        parts.append(f"expires after {sub.expire_after} s")
    if sub.expire_after_by_type:
        parts.append(f"expiry for {len(sub.expire_after_by_type)} type(s)")
    return parts
