"""Form fields of the subscription page that people type into: event types as a comma-separated
line, static headers as name/value rows. The model keeps JSON (a list, an object)."""

from __future__ import annotations

import json
import re

from django import forms
from django.utils.html import format_html, format_html_join

# RFC 9110 token characters: what a header name may be made of.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set by the hub on every delivery (subscriptions/payloads.py): a static header cannot replace them.
HUB_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-hub-event-type",
        "x-hub-source",
    }
)
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 255
MAX_HEADERS = 20
MAX_HEADER_VALUE = 1000
EMPTY_HEADER_ROWS = 2


class EventTypesField(forms.CharField):
    """`appliance/*, session.*` <-> ["appliance/*", "session.*"]; a pasted JSON list works too."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 60}))
        kwargs.setdefault(
            "help_text",
            "Comma-separated exact types or globs, e.g. appliance/*, ev/charge-started, "
            "session.*; * is every type.",
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value) -> list[str]:
        text = (value or "").strip()
        if text.startswith("["):
            return json_list(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    def validate(self, value: list[str]) -> None:
        if self.required and not value:
            raise forms.ValidationError("Name at least one event type, or * for every type.")
        if len(value) > MAX_PATTERNS:
            raise forms.ValidationError(f"At most {MAX_PATTERNS} event types.")
        for pattern in value:
            if len(pattern) > MAX_PATTERN_LENGTH or any(c.isspace() for c in pattern):
                raise forms.ValidationError(
                    f"{pattern[:40]!r} is not an event type: no spaces, at most "
                    f"{MAX_PATTERN_LENGTH} characters; separate types with commas."
                )


def json_list(text: str) -> list[str]:
    try:
        parsed = json.loads(text)
    except ValueError:
        raise forms.ValidationError("Separate event types with commas.") from None
    if not isinstance(parsed, list) or not all(isinstance(v, str) and v for v in parsed):
        raise forms.ValidationError("Separate event types with commas.")
    return parsed


class HeaderRowsWidget(forms.Widget):
    """A table of name/value inputs: the stored headers, then a few empty rows."""

    def render(self, name, value, attrs=None, renderer=None):
        rows = format_html_join(
            "",
            '<tr><td><input type="text" name="{}_name" value="{}" size="28" '
            'aria-label="Header name"></td><td><input type="text" name="{}_value" value="{}" '
            'size="60" aria-label="Header value"></td></tr>',
            ((name, key, name, text) for key, text in self.format_value(value)),
        )
        return format_html(
            '<table class="hub-header-rows" id="{}"><thead><tr><th>Name</th><th>Value</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            (attrs or {}).get("id", f"id_{name}"),
            rows,
        )

    def format_value(self, value):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = {}
        rows = list(value.items()) if isinstance(value, dict) else list(value or [])
        return rows + [("", "")] * EMPTY_HEADER_ROWS

    def value_from_datadict(self, data, files, name):
        names = data.getlist(f"{name}_name") if hasattr(data, "getlist") else []
        values = data.getlist(f"{name}_value") if hasattr(data, "getlist") else []
        return list(zip(names, values, strict=False))

    def value_omitted_from_data(self, data, files, name):
        return f"{name}_name" not in data


class HeaderRowsField(forms.Field):
    """Rows of (name, value) <-> {"name": "value"}; empty rows are dropped."""

    widget = HeaderRowsWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "help_text",
            "Static headers sent with every delivery, e.g. Authorization: Bearer …. "
            "Empty a row's name to remove it.",
        )
        super().__init__(**kwargs)

    def to_python(self, value) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, text in value or []:
            name, text = name.strip(), text.strip()
            if not name:
                continue
            check_header(name, text)
            if name.lower() in {n.lower() for n in headers}:
                raise forms.ValidationError(f"The header {name} is named twice.")
            headers[name] = text
        if len(headers) > MAX_HEADERS:
            raise forms.ValidationError(f"At most {MAX_HEADERS} headers.")
        return headers

    def has_changed(self, initial, data) -> bool:
        try:
            return (initial or {}) != self.to_python(data)
        except forms.ValidationError:
            return True


def check_header(name: str, value: str) -> None:
    if not HEADER_NAME.fullmatch(name):
        raise forms.ValidationError(
            f"{name[:40]!r} is not a header name: letters, digits and - (e.g. X-Api-Key)."
        )
    if name.lower() in HUB_HEADERS:
        raise forms.ValidationError(f"The hub sets {name} itself on every delivery.")
    if len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\x00"):
        raise forms.ValidationError(
            f"The value of {name} must be one line of at most {MAX_HEADER_VALUE} characters."
        )
