import json

import factory
from django.utils import timezone

from receivers.models import Event, Provider, Source, SourceSecret


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    slug = factory.Sequence(lambda n: f"source-{n}")
    provider = Provider.GRIDX


class SecretFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SourceSecret

    source = factory.SubFactory(SourceFactory)
    value = factory.Sequence(lambda n: f"whsec_test-secret-number-{n:04d}")


def source_with_secret(provider: str = Provider.GRIDX, secret: str | None = None, **kwargs):
    source = SourceFactory(provider=provider, **kwargs)
    SecretFactory(source=source, **({"value": secret} if secret else {}))
    return source


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
