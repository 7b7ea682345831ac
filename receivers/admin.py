"""Admin for sources (secrets, receive URL, rotation) and the read-only event history.

The event list must stay fast with a million rows: no full COUNT(*) per page (see
EstimatedCountPaginator), type choices from an index skip-scan instead of a DISTINCT over the
table, sorting only on the indexed column, and the big columns deferred. What relaying adds to
an event's page (its deliveries, "Replay failed") is registered by subscriptions/admin.py.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections, router
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from . import sources
from .masking import shown_headers
from .models import VERIFICATION_FIELDS, Event, Source, SourceSecret, mask
from .providers import PROVIDERS


class HistoryAdminMixin:
    """Records, such as the event history: read-only."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def object_or_404(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str):
    """The admin's own lookup, which takes a malformed id for a missing object: 404, not 500."""
    found = model_admin.get_object(request, object_id)
    if found is None:
        raise Http404(f"No {model_admin.opts.verbose_name} with this id.")
    return found


# Scale helpers, shared with the delivery admin ---------------------------------------------


def planner_estimate(queryset) -> int | None:
    """PostgreSQL's own row estimate for a query: costs a plan, not a scan."""
    if connections[queryset.db].vendor != "postgresql":
        return None
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to `exact_up_to` rows, then uses the planner's estimate.

    A bounded count reads at most that many index entries, so a page never costs a scan of
    the whole table; the list then says "about N".
    """

    exact_up_to = 10_000
    is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by().values("pk")[: self.exact_up_to + 1].count()
        if bounded <= self.exact_up_to:
            return bounded
        estimate = planner_estimate(queryset)
        if estimate is None:
            return queryset.count()
        self.is_estimate = True
        return max(estimate, bounded)


def distinct_values(model, column: str, limit: int) -> list[str]:
    """The distinct values of an indexed column by a skip-scan: one index probe per value.

    A plain DISTINCT reads every row; with a few dozen event types over a million events
    this reads a few dozen index entries instead.
    """
    connection = connections[router.db_for_read(model)]
    table = connection.ops.quote_name(model._meta.db_table)
    name = connection.ops.quote_name(column)
    # Only quoted identifiers of the model are interpolated; the limit is a parameter.
    sql = (
        f"WITH RECURSIVE found(value) AS ("  # noqa: S608
        f" SELECT MIN({name}) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({name}) FROM {table} WHERE {name} > found.value)"
        f" FROM found WHERE found.value IS NOT NULL"
        f") SELECT value FROM found WHERE value IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


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


class LightChangeList(ChangeList):
    """The list never shows the bodies: leave the big columns in the database."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        return queryset.defer(*self.model_admin.list_deferred)


class ScaledListMixin:
    """List settings for tables that grow to millions of rows."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_deferred: tuple[str, ...] = ()

    def get_changelist(self, request, **kwargs):
        return LightChangeList


# Sources ------------------------------------------------------------------------------------


class SourceAddForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to generate one (shown once). Paste the platform's value when "
        "the platform chooses the secret, e.g. a Jedlix API key.",
    )

    class Meta:
        model = Source
        fields = [
            "slug",
            "provider",
            "description",
            "is_active",
            *VERIFICATION_FIELDS,
        ]


class RotateSecretForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0,
        max_value=24 * 30,
        initial=sources.ROTATION_GRACE_HOURS,
        help_text="How long the current secrets stay valid next to the new one.",
    )
    secret = forms.CharField(
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to generate one (shown once).",
    )


class SecretInline(admin.TabularInline):
    model = SourceSecret
    extra = 0
    fields = ["masked", "created_at", "expires_at", "state"]
    readonly_fields = fields
    verbose_name_plural = "secrets (values are never shown again after creation)"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("value")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="state")
    def state(self, secret: SourceSecret) -> str:
        if secret.expires_at is None:
            return "active"
        if secret.expires_at > timezone.now():
            return f"in grace until {secret.expires_at:%Y-%m-%d %H:%M} UTC"
        return "expired"


def provider_fieldsets() -> list[tuple[str, dict]]:
    """One folded fieldset per provider with options of its own, from the registry."""
    return [
        (f"{provider.label} options", {"classes": ("collapse",), "fields": provider.options})
        for provider in PROVIDERS.values()
        if provider.options
    ]


def active_secrets(source: Source) -> list[SourceSecret]:
    now = timezone.now()
    return [s for s in source.secrets.all() if s.expires_at is None or s.expires_at > now]


def copy_field(value: str) -> str:
    return format_html(
        '<span class="hub-copy"><input type="text" readonly value="{}" size="{}">'
        '<button type="button" class="button" data-copy="{}">Copy</button></span>',
        value,
        min(len(value), 34),
        value,
    )


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["slug", "provider", "is_active", "receive_url", "secrets_summary", "warning"]
    list_filter = ["provider", "is_active"]
    search_fields = ["slug", "description"]
    actions = ["rotate_secrets"]
    inlines = [SecretInline]
    add_form = SourceAddForm
    readonly_fields = ["receive_url", "warning"]
    main_fields = ("slug", "provider", "description", "is_active")
    verification_fieldset = (
        "Verification",
        {"fields": ("verify_nothing", "allowed_ips", "tolerance_seconds")},
    )

    def get_queryset(self, request):
        # Secret values are never shown: they stay in the database, undecrypted.
        secrets = Prefetch("secrets", queryset=SourceSecret.objects.defer("value"))
        return super().get_queryset(request).prefetch_related(secrets)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": (*self.main_fields, "secret")}),
                self.verification_fieldset,
                *provider_fieldsets(),
            ]
        return [
            ("Receiving", {"fields": ("receive_url", "warning")}),
            (None, {"fields": self.main_fields}),
            self.verification_fieldset,
            *provider_fieldsets(),
        ]

    def get_readonly_fields(self, request, obj=None):
        # Its secrets are stored for the provider (keys encrypted, tokens as digests).
        fixed = ["provider"] if obj is not None else []
        return [*super().get_readonly_fields(request, obj), *fixed]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        source = self.get_object(request, object_id)
        warning = ""
        if source is not None:
            warning = sources.verification_warning(source, len(active_secrets(source)))
        extra_context = {**(extra_context or {}), "verification_warning": warning}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:
            return
        given = form.cleaned_data.get("secret") or None
        value = sources.add_secret(obj, given)
        if given:
            self.message_user(request, f"Source {obj}: your secret {mask(value)} is active.")
        else:
            self.show_once(request, f"Secret of {obj.slug}", obj, value)

    def show_once(self, request: HttpRequest, label: str, source: Source, value: str) -> None:
        url = sources.receive_url(source, value)
        with_url = format_html(" Receive URL: <code>{}</code>", url) if "?" in url else ""
        self.message_user(
            request,
            format_html("{}, shown once, copy it now: <code>{}</code>{}", label, value, with_url),
            messages.WARNING,
        )

    @admin.display(description="receive URL")
    def receive_url(self, source: Source) -> str:
        return copy_field(sources.receive_url(source))

    @admin.display(description="secrets")
    def secrets_summary(self, source: Source) -> str:
        active = active_secrets(source)
        if not active:
            return "none"
        return ", ".join(
            secret.masked + (" (grace)" if secret.expires_at else "") for secret in active
        )

    @admin.display(description="verification")
    def warning(self, source: Source) -> str:
        text = sources.verification_warning(source, len(active_secrets(source)))
        if not text:
            return mark_safe('<span class="hub-ok">verified</span>')  # noqa: S308
        return format_html('<span class="hub-warning">&#9888; {}</span>', text)

    @admin.action(
        description="Rotate the secret (old ones stay valid for 72 hours)", permissions=["change"]
    )
    def rotate_secrets(self, request, queryset):
        for source in queryset:
            self.rotate_and_report(request, source, sources.ROTATION_GRACE_HOURS, None)

    def rotate_and_report(
        self, request: HttpRequest, source: Source, grace_hours: int, given: str | None
    ) -> None:
        value = sources.rotate_secret(source, grace_hours=grace_hours, value=given)
        self.log_change(
            request,
            source,
            f"Rotated the secret; the previous ones stay valid for {grace_hours} hours.",
        )
        if given:
            self.message_user(request, f"Source {source}: new secret {mask(value)} is active.")
            return
        label = f"New secret of {source.slug} (the previous ones stay valid {grace_hours} hours)"
        self.show_once(request, label, source, value)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="receivers_source_rotate_secret",
            ),
            *super().get_urls(),
        ]

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        source = object_or_404(self, request, object_id)
        if not self.has_change_permission(request, source):
            raise PermissionDenied
        form = RotateSecretForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            self.rotate_and_report(
                request, source, form.cleaned_data["grace_hours"], form.cleaned_data["secret"]
            )
            return HttpResponseRedirect(reverse("admin:receivers_source_change", args=[source.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate the secret of {source}",
            "opts": self.opts,
            "original": source,
            "form": form,
            "active": active_secrets(source),
        }
        return TemplateResponse(request, "admin/receivers/source/rotate_secret.html", context)


# Events -------------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(HistoryAdminMixin, ScaledListMixin, admin.ModelAdmin):
    list_display = [
        "received_at",
        "source",
        "type",
        "external_id",
        "status",
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
    search_help_text = "The event id exactly as the platform sent it."
    fieldsets = [
        (
            None,
            {
                "fields": (
                    ("source", "type"),
                    ("external_id", "status"),
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
        "status",
        "received_at",
        "occurred_at",
        "is_test",
        "duplicates",
        "body_size",
        "pretty_payload",
        "header_table",
    ]

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
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace")
    return json.dumps(parsed, indent=2, ensure_ascii=False)
