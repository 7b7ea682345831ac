"""`{{ moment|ago }}`: "under a minute ago" rather than Django's "0 minutes" ago."""

from django import template
from django.utils import timezone

from subscriptions.states import duration

register = template.Library()


@register.filter
def ago(value) -> str:
    return f"{duration(value, timezone.now())} ago" if value else "never"
