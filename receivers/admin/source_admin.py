"""Admin for sources: secrets shown once, the receive URL, rotation, a warning when a source is
not protected. A provider's own options get a fieldset of their own, read from the registry."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from .. import activity, sources
from ..models import VERIFICATION_FIELDS, Source, SourceSecret, mask
from ..providers import PROVIDERS
from .activity import SourceActivityMixin
from .lists import object_or_404


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
        max_value=sources.MAX_GRACE_HOURS,
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
class SourceAdmin(SourceActivityMixin, admin.ModelAdmin):
    list_display = [
        "slug",
        "provider",
        "is_active",
        "receive_url",
        "secrets_summary",
        "warning",
        *SourceActivityMixin.activity_columns,
    ]
    list_filter = ["provider", "is_active"]
    search_fields = ["slug", "description"]
    actions = ["rotate_secrets"]
    inlines = [SecretInline]
    add_form = SourceAddForm
    readonly_fields = ["receive_url", "warning", *SourceActivityMixin.activity_fields]
    main_fields = ("slug", "provider", "description", "is_active", "expected_interval")
    verification_fieldset = (
        "Verification",
        {"fields": ("verify_nothing", "allowed_ips", "tolerance_seconds")},
    )

    def get_queryset(self, request):
        # Secret values are never shown: they stay in the database, undecrypted.
        secrets = Prefetch("secrets", queryset=SourceSecret.objects.defer("value"))
        queryset = super().get_queryset(request).prefetch_related(secrets)
        return activity.with_activity(queryset, timezone.now())

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (None, {"fields": (*self.main_fields, "secret")}),
                self.verification_fieldset,
                *provider_fieldsets(),
            ]
        return [
            ("Receiving", {"fields": ("receive_url", "warning")}),
            ("Activity", {"fields": self.activity_fields}),
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
        if source.is_internal:
            return "the hub's own alerts: refuses every request"
        text = sources.verification_warning(source, len(active_secrets(source)))
        if not text:
            return mark_safe('<span class="hub-ok">verified</span>')  # noqa: S308
        return format_html('<span class="hub-warning">&#9888; {}</span>', text)

    @admin.action(
        description="Rotate the secret (old ones stay valid for 72 hours)", permissions=["change"]
    )
    def rotate_secrets(self, request, queryset):
        for source in queryset:
            if source.is_internal:
                continue
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
