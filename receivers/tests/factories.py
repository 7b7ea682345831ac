import factory

from receivers.models import Provider, Source, SourceSecret


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
