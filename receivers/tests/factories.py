"""factory_boy factories for receiving's models, and the one way tests make a source."""

from __future__ import annotations

import json

import factory
from django.utils import timezone

from receivers.models import (
    Event,
    EventStatus,
    Source,
    SourceSecret,
    generate_secret,
    secret_fields,
)
from receivers.providers import get_provider

# Options that make a provider's source work, for providers that read options of their own.
# The generic HMAC one is GitHub-like and also signs a timestamp header, to exercise the template.
HMAC_OPTIONS = {
    "hmac_header": "X-Acme-Signature",
    "hmac_algorithm": "sha256",
    "hmac_encoding": "base64",
    "hmac_prefix": "sha256=",
    "hmac_template": "{header:X-Acme-Timestamp}.{body}",
    "hmac_timestamp_header": "X-Acme-Timestamp",
}
PROVIDER_OPTIONS = {"hmac": HMAC_OPTIONS}


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    slug = factory.Sequence(lambda n: f"source-{n}")
    provider = "gridx"


class SecretFactory(factory.django.DjangoModelFactory):
    """`value` is the secret as the platform knows it; the row keeps what the provider needs
    (secret_fields), and the returned instance carries the secret itself as `plaintext`."""

    class Meta:
        model = SourceSecret

    source = factory.SubFactory(SourceFactory)
    value = factory.Sequence(lambda n: f"whsec_test-secret-number-{n:04d}")

    @classmethod
    def _create(cls, model_class, source, value, **kwargs):
        secret = model_class.objects.create(
            source=source, **secret_fields(source.provider, value), **kwargs
        )
        secret.plaintext = value
        return secret


def make_source(provider: str = "gridx", secrets: int = 1, **fields) -> tuple[Source, list[str]]:
    """A source that works for its provider, with `secrets` generated secrets (returned too)."""
    source = SourceFactory(provider=provider, **{**PROVIDER_OPTIONS.get(provider, {}), **fields})
    url_safe = get_provider(provider).url_token
    values = [generate_secret(url_safe=url_safe) for _ in range(secrets)]
    for value in values:
        SecretFactory(source=source, value=value)
    return source, values


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    source = factory.SubFactory(SourceFactory)
    external_id = factory.Sequence(lambda n: f"evt-{n}")
    type = "appliance/online"
    payload = factory.LazyAttribute(lambda o: {"id": o.external_id, "type": o.type, "data": {}})
    raw_body = factory.LazyAttribute(lambda o: json.dumps(o.payload).encode())
    headers = factory.LazyFunction(lambda: {"content-type": "application/json"})
    received_at = factory.LazyFunction(timezone.now)


class DispatchedEventFactory(EventFactory):
    """An event of the history: fanned out already, its signature header stored masked."""

    status = EventStatus.DISPATCHED
    headers = factory.LazyFunction(
        lambda: {"content-type": "application/json", "x-signature": "****"}
    )
