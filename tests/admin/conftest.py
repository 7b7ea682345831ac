"""Fixtures for the admin tests: a source, a subscription whose target answers, a failed
delivery; the dashboard's cache emptied before each test."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from receivers.models import Source
from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.models import Delivery, Subscription
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from subscriptions.tests.receiver import Answer


@pytest.fixture(autouse=True)
def _empty_cache():
    """The dashboard caches finished hours; every test starts from an empty cache."""
    cache.clear()


@pytest.fixture
def receiver(receiver):
    """The fake subscriber, answering JSON as the admin shows it."""
    receiver.default = Answer.json(200)
    return receiver


@pytest.fixture
def source(db) -> Source:
    return make_source(slug="gridx-prod")[0]


@pytest.fixture
def subscription(db, receiver) -> Subscription:
    return SubscriptionFactory(url=receiver.url, name="billing")


@pytest.fixture
def failed_delivery(source, subscription) -> Delivery:
    return DeliveryFactory(event=DispatchedEventFactory(source=source), subscription=subscription)
