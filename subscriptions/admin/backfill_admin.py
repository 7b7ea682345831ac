"""Backfill from the admin: "Send events…" on a subscription (a time range, optional types and
sources, a preview count, then confirm), and the backfills with their progress."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from receivers.admin.lists import object_or_404
from receivers.models import Source

from ..models import Backfill, Subscription
from ..services import backfill

BACKFILL_PERMISSION = "subscriptions.add_backfill"


def can_backfill(request: HttpRequest) -> bool:
    return request.user.has_perm(BACKFILL_PERMISSION)


def split_types(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


class BackfillForm(forms.Form):
    received_after = forms.DateTimeField(help_text="UTC, e.g. 2026-03-01 00:00:00.")
    received_before = forms.DateTimeField(required=False, help_text="UTC. Empty: now.")
    event_types = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Comma-separated types or globs, e.g. appliance/*, ev/plugged. "
        "Empty: every type the subscription takes.",
    )
    sources = forms.ModelMultipleChoiceField(
        queryset=Source.objects.order_by("slug"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Empty: every source the subscription takes.",
    )
    resend = forms.BooleanField(
        required=False, help_text="Also send the events already delivered to this subscription."
    )

    def clean(self):
        data = super().clean()
        after = data.get("received_after")
        before = data.get("received_before") or timezone.now()
        if after is not None and after >= before:
            raise forms.ValidationError("The start must come before the end.")
        data["received_before"] = before
        return data

    def backfill_request(self) -> backfill.Request:
        data = self.cleaned_data
        return backfill.Request(
            received_after=data["received_after"],
            received_before=data["received_before"],
            event_types=split_types(data["event_types"]),
            sources=list(data["sources"]),
            resend=data["resend"],
        )


def backfill_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The form: "Preview the count" shows how many events match, "Send" starts it."""
    sub = object_or_404(model_admin, request, object_id)
    if not can_backfill(request):
        raise PermissionDenied
    form = BackfillForm(request.POST or None)
    preview = None
    if request.method == "POST" and form.is_valid():
        asked = form.backfill_request()
        if "confirm" in request.POST:
            return start_and_report(model_admin, request, sub, asked)
        preview = backfill.preview(sub, asked)
    opts = Subscription._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Send events to {sub.name}",
        "opts": opts,
        "original": sub,
        "form": form,
        "preview": preview,
    }
    return TemplateResponse(request, "admin/subscriptions/subscription/backfill.html", context)


def start_and_report(
    model_admin: admin.ModelAdmin, request: HttpRequest, sub: Subscription, asked
) -> HttpResponse:
    started = backfill.start(sub, asked, created_by=request.user.get_username())
    noun = "event" if started.total == 1 else "events"
    model_admin.log_change(
        request, sub, f"Backfill {started.pk}: {started.total} {noun} to send, in received order."
    )
    model_admin.message_user(
        request,
        f"Backfill of {started.total} {noun} to {sub.name} started; its progress is shown here.",
        messages.SUCCESS,
    )
    return HttpResponseRedirect(reverse("admin:subscriptions_backfill_change", args=[started.pk]))


@admin.register(Backfill)
class BackfillAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "progress", "queued", "skipped", "range", "created_by"]
    list_filter = ["state", "subscription"]
    list_select_related = ["subscription"]
    fields = [
        "subscription",
        "state",
        "progress",
        "range",
        "event_types",
        "sources",
        "resend",
        "queued",
        "skipped",
        "created_at",
        "created_by",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # started from its subscription: "Send events…"

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, job: Backfill) -> str:
        share = f" ({100 * job.examined // job.total}%)" if job.total else ""
        return f"{job.examined} of {job.total} events looked at{share}"

    @admin.display(description="received", ordering="received_after")
    def range(self, job: Backfill) -> str:
        return (
            f"{job.received_after:%Y-%m-%d %H:%M:%S} to {job.received_before:%Y-%m-%d %H:%M:%S} UTC"
        )
