"""`{{ moment|ago }}`: "under a minute ago" rather than Django's "0 minutes" ago."""

from django import template

from receivers import timetext

register = template.Library()


@register.filter
def ago(value) -> str:
    return timetext.ago(value)
