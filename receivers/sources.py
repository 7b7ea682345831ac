"""Creating sources and rotating their secrets; what the admin calls."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .lookup import forget_sources
from .models import Source, SourceSecret, generate_secret, secret_fields
from .providers import get_provider

ROTATION_GRACE_HOURS = 72
# The longest grace period a rotation may ask for, of a source's or a subscription's secret.
MAX_GRACE_HOURS = 24 * 30


def add_secret(source: Source, value: str | None = None) -> str:
    """Give a source one more active secret (generated unless given); returns the plaintext,
    which nothing keeps afterwards (see SourceSecret)."""
    if not value:
        value = generate_secret(url_safe=get_provider(source.provider).url_token)
    SourceSecret.objects.create(source=source, **secret_fields(source.provider, value))
    return value


@transaction.atomic
def create_source(
    slug: str, provider: str, secrets: list[str] | None = None, **options
) -> tuple[Source, list[str]]:
    """Create a source with its secrets: the given ones, or one generated when None.

    The plaintext secrets are returned so the caller can show them once; an empty list
    creates a source without a secret (which refuses every request unless verify_nothing).
    """
    source = Source(slug=slug, provider=provider, **options)
    source.full_clean()
    source.save()
    values = [add_secret(source)] if secrets is None else [add_secret(source, v) for v in secrets]
    return source, values


@transaction.atomic
def rotate_secret(
    source: Source, grace_hours: int = ROTATION_GRACE_HOURS, value: str | None = None
) -> str:
    """Add a new secret; the active old ones stay valid for `grace_hours`, then expire."""
    end_active_secrets(source, grace_hours)
    return add_secret(source, value)


@transaction.atomic
def replace_secrets(source: Source, secrets: list[str], grace_hours: int = 0) -> list[str]:
    """Make `secrets` the source's secrets; the active old ones end after `grace_hours` (now by
    default). Returns the new plaintext values."""
    end_active_secrets(source, grace_hours)
    return [add_secret(source, value) for value in secrets]


def end_active_secrets(source: Source, grace_hours: int) -> None:
    """The active secrets expire after the grace; one expiring sooner keeps its earlier end."""
    now = timezone.now()
    grace_end = now + timedelta(hours=grace_hours)
    SourceSecret.objects.filter(source=source).active(now).exclude(
        expires_at__lte=grace_end
    ).update(expires_at=grace_end)
    forget_sources()  # update() sends no signal


def receive_url(source: Source, secret: str | None = None) -> str:
    """The URL to give the platform; with the secret for providers that read it from the URL."""
    # The same form as the CloudEvents `source` of relayed events (payloads.cloudevent).
    url = f"{settings.HUB_PUBLIC_URL}/hooks/{source.slug}/"
    if secret and get_provider(source.provider).url_token:
        url += "?" + urlencode({"token": secret})
    return url


def verification_warning(source: Source, active_secrets: int) -> str:
    """What an operator must know about how this source is protected, or "" when all is well."""
    if source.is_internal:
        return ""  # written by the hub itself; its provider refuses every request
    if source.verify_nothing:
        return "Verifies nothing: every request to this URL is accepted."
    if not active_secrets:
        return "No active secret: every request is refused until one is added."
    provider = get_provider(source.provider)
    if provider.url_token and not source.allowed_ips.strip():
        return (
            f"{provider.label} signs nothing: only the token in the URL is "
            "checked, never the body. Add an IP allow list."
        )
    return ""
