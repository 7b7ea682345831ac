from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from receivers.models import Event
from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.models import Attempt, Delivery
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(settings):
    settings.HUB_RETENTION_DAYS = 7
    source = make_source()[0]
    sub = SubscriptionFactory()
    old = [
        DispatchedEventFactory(
            source=source, received_at=timezone.now() - timedelta(days=8, minutes=n)
        )
        for n in range(5)
    ]
    for event in old[:2]:
        DeliveryFactory(event=event, subscription=sub, attempts=(500, 500))
    fresh = DispatchedEventFactory(source=source, received_at=timezone.now() - timedelta(days=6))
    DeliveryFactory(event=fresh, subscription=sub)
    return old, fresh


def run(*args) -> str:
    out = StringIO()
    call_command("purge_events", *args, stdout=out)
    return out.getvalue()


def test_dry_run_only_counts(aged):
    output = run("--dry-run")
    assert "Dry run: 5 event(s)" in output
    assert Event.objects.count() == 6


def test_purge_deletes_old_events_with_deliveries_and_attempts(aged):
    old, fresh = aged
    output = run("--batch-size", "2")
    assert "Deleting 5 event(s)" in output and "2 per batch" in output
    assert "deleted 5 of 5 (100%)" in output
    assert "Deleted 5 event(s)" in output
    assert list(Event.objects.all()) == [fresh]
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [fresh.pk]
    assert Attempt.objects.count() == 1


def test_days_option(aged):
    assert "Deleted 0 event(s)" in run("--days", "30")
    assert "Deleted 6 event(s)" in run("--days", "1")


@pytest.mark.parametrize("args", [("--days", "0"), ("--batch-size", "0")])
def test_bad_options(args):
    with pytest.raises(CommandError):
        run(*args)
