"""Shared test fixtures and the rule for tests that need the real PostgreSQL or Redis.

Under `.ci/run` (HUB_REQUIRE_SERVICES=1, or CI=true) such a test FAILS when its service is
missing; on a laptop without them it is skipped with the reason, so `make test` still runs.
"""

import os

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from receivers import metrics, refusals
from subscriptions.tests.receiver import TestReceiver


def services_required() -> bool:
    return os.environ.get("HUB_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true"


def missing(reason: str) -> None:
    if services_required():
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def redis_url() -> str | None:
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith("redis://") else None


@pytest.fixture(autouse=True)
def _services(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        missing("this test needs PostgreSQL: set DATABASE_URL=postgres://…")
    if request.node.get_closest_marker("redis"):
        url = redis_url()
        if url is None:
            missing("this test needs Redis: set CELERY_BROKER_URL=redis://…")
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            missing(f"Redis at {url} is not answering: {exc}")


@pytest.fixture(autouse=True)
def _no_counts_of_other_tests():
    """Counts and refused requests wait in memory until a flush: each test starts without
    another's, and leaves none behind."""
    metrics.take()
    refusals.discard()
    yield
    metrics.take()


@pytest.fixture
def api(db) -> APIClient:
    """The management API as a superuser with a token."""
    user = get_user_model().objects.create_superuser("ops", password="pw-for-tests-only")
    _, token = AuthToken.objects.create(user, expiry=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def receiver():
    """The fake subscriber: a local HTTP server that records requests and answers as scripted."""
    with TestReceiver() as running:
        yield running
