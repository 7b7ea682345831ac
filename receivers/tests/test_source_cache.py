"""The per-process source cache: one query per slug per HUB_SOURCE_CACHE_SECONDS, and any
change to a source or its secrets, made in this process, is seen at once."""

from types import SimpleNamespace

import pytest
from django.test import override_settings

from receivers import lookup
from receivers.lookup import cached_source, forget_sources
from receivers.sources import add_secret, end_active_secrets, replace_secrets, rotate_secret
from receivers.tests.factories import SecretFactory, SourceFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]


@pytest.fixture
def empty_cache():
    forget_sources()
    yield
    forget_sources()


@pytest.fixture
def cached():
    with override_settings(HUB_SOURCE_CACHE_SECONDS=60):
        yield


def secrets_of(slug: str) -> list[str]:
    found = cached_source(slug)
    assert found is not None
    return found[1]


@pytest.mark.usefixtures("cached")
def test_second_lookup_does_no_query(django_assert_num_queries):
    source = SecretFactory(value="first-secret").source
    with django_assert_num_queries(1):
        found = cached_source(source.slug)
    assert found is not None
    assert (found[0].pk, found[0].slug, found[1]) == (source.pk, source.slug, ["first-secret"])
    with django_assert_num_queries(0):
        again = cached_source(source.slug)
    assert again == found


@pytest.mark.usefixtures("cached")
def test_each_slug_is_cached_separately(django_assert_num_queries):
    one, two = SourceFactory(), SourceFactory()
    with django_assert_num_queries(2):
        assert cached_source(one.slug)[0].pk == one.pk
        assert cached_source(two.slug)[0].pk == two.pk
    with django_assert_num_queries(0):
        assert cached_source(one.slug)[0].pk == one.pk
        assert cached_source(two.slug)[0].pk == two.pk


@pytest.mark.usefixtures("cached")
def test_saving_the_source_clears_the_cache(django_assert_num_queries):
    source = SourceFactory()
    assert cached_source(source.slug) is not None
    source.is_active = False
    source.save()
    with django_assert_num_queries(1):
        assert cached_source(source.slug) is None


@pytest.mark.usefixtures("cached")
def test_deleting_the_source_clears_the_cache():
    source = SourceFactory()
    assert cached_source(source.slug) is not None
    source.delete()
    assert cached_source(source.slug) is None


@pytest.mark.usefixtures("cached")
def test_adding_and_deleting_a_secret_clears_the_cache():
    source = SourceFactory()
    assert secrets_of(source.slug) == []
    secret = SecretFactory(source=source, value="added")
    assert secrets_of(source.slug) == ["added"]
    secret.delete()
    assert secrets_of(source.slug) == []


@pytest.mark.usefixtures("cached")
def test_saving_an_expiry_on_a_secret_clears_the_cache():
    from django.utils import timezone

    secret = SecretFactory(value="expiring")
    slug = secret.source.slug
    assert secrets_of(slug) == ["expiring"]
    secret.expires_at = timezone.now()
    secret.save()
    assert secrets_of(slug) == []


@pytest.mark.usefixtures("cached")
def test_rotate_secret_clears_the_cache():
    source = SecretFactory(value="old").source
    assert secrets_of(source.slug) == ["old"]
    new = rotate_secret(source, value="new")
    assert new == "new"
    # The old one stays valid during the grace period.
    assert secrets_of(source.slug) == ["old", "new"]
    rotate_secret(source, grace_hours=0, value="newest")
    assert secrets_of(source.slug) == ["newest"]


@pytest.mark.usefixtures("cached")
def test_replace_secrets_clears_the_cache_even_without_new_secrets():
    # With no new secret, only the queryset update changes anything: no save signal is sent,
    # so end_active_secrets must clear the cache itself.
    source = SecretFactory(value="revoked").source
    assert secrets_of(source.slug) == ["revoked"]
    assert replace_secrets(source, []) == []
    assert secrets_of(source.slug) == []


@pytest.mark.usefixtures("cached")
def test_replace_secrets_with_new_ones_clears_the_cache():
    source = SecretFactory(value="before").source
    assert secrets_of(source.slug) == ["before"]
    replace_secrets(source, ["after-1", "after-2"])
    assert secrets_of(source.slug) == ["after-1", "after-2"]


@pytest.mark.usefixtures("cached")
def test_end_active_secrets_clears_the_cache():
    source = SecretFactory(value="ending").source
    add_secret(source, "also-ending")
    assert secrets_of(source.slug) == ["ending", "also-ending"]
    end_active_secrets(source, grace_hours=0)
    assert secrets_of(source.slug) == []


@pytest.mark.usefixtures("cached")
def test_an_unknown_slug_is_cached_until_that_source_is_created(django_assert_num_queries):
    with django_assert_num_queries(1):
        assert cached_source("not-yet") is None
    with django_assert_num_queries(0):
        assert cached_source("not-yet") is None
    source = SourceFactory(slug="not-yet")
    with django_assert_num_queries(1):
        found = cached_source("not-yet")
    assert found is not None and found[0].pk == source.pk


@pytest.mark.usefixtures("cached")
def test_an_entry_expires_after_the_cache_seconds(monkeypatch, django_assert_num_queries):
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(lookup, "time", SimpleNamespace(monotonic=lambda: clock.now))
    source = SourceFactory()
    with django_assert_num_queries(1):
        cached_source(source.slug)
    clock.now += 59
    with django_assert_num_queries(0):
        cached_source(source.slug)
    clock.now += 2
    with django_assert_num_queries(1):
        cached_source(source.slug)


@override_settings(HUB_SOURCE_CACHE_SECONDS=0)
def test_zero_seconds_disables_the_cache(django_assert_num_queries):
    source = SourceFactory()
    with django_assert_num_queries(3):
        for _ in range(3):
            assert cached_source(source.slug)[0].pk == source.pk
    with django_assert_num_queries(2):
        assert cached_source("nobody") is None
        assert cached_source("nobody") is None
    assert lookup._cache == {}
