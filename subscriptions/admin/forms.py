"""The subscription admin's forms: the editable fields, the energy options (docs/energy.md)
and the signing-secret rotation's confirmation."""

from __future__ import annotations

from django import forms

from receivers.masking import keep_masked_values, masked_values
from receivers.sources import MAX_GRACE_HOURS

from ..models import Priority, Subscription
from ..services import controls
from ..services.fanout import STAMPED_OPTIONS
from .form_fields import EventTypesField, HeaderRowsField

EDITABLE_FIELDS = (
    "name",
    "url",
    "event_types",
    "sources",
    "payload_format",
    "headers",
    "timeout_seconds",
)
# docs/energy.md; all off by default.
ENERGY_FIELDS = (
    "priority",
    "filter",
    "filter_rules",
    "ordering_key",
    "coalesce",
    ("expire_after", "expire_after_by_type"),
)
# What an empty box means for the JSON options: none.
EMPTY_JSON = {"filter": list, "coalesce": list, "expire_after_by_type": dict}


class SubscriptionForm(forms.ModelForm):
    """Static header values are shown masked; a masked value saved as it is keeps the stored one."""

    event_types = EventTypesField()
    headers = HeaderRowsField()

    class Meta:
        model = Subscription
        fields = [*EDITABLE_FIELDS, *STAMPED_OPTIONS, "priority", "filter"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["priority"].required = False
        if self.instance.pk:
            self.initial["headers"] = masked_values(self.instance.headers or {})

    def clean_priority(self) -> str:
        return self.cleaned_data["priority"] or Priority.NORMAL

    def clean(self):
        cleaned = super().clean()
        for name, empty in EMPTY_JSON.items():
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = empty()
        return cleaned

    def clean_headers(self):
        headers = self.cleaned_data["headers"]
        if self.instance.pk and isinstance(headers, dict):
            return keep_masked_values(headers, self.instance.headers or {})
        return headers


class RotateSigningSecretForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        initial=controls.SIGNING_GRACE_HOURS,
        help_text="How long the current secret keeps signing, as a second signature.",
    )
