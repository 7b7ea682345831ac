"""Replays after retention: the purge keeps the ids of the events it deletes, for
HUB_DEDUP_DAYS, and a request carrying one of them is a duplicate, not a new event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from receivers.models import Event, SeenEvent
from receivers.retention import purge_old_events
from receivers.storage import insert_events
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import fixture_of, gridx_body, post, sign
from subscriptions.models import Delivery
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def age(days: float) -> None:
    Event.objects.update(received_at=timezone.now() - timedelta(days=days))


@pytest.mark.parametrize("provider", ["gridx", "ideavate", "jedlix", "openvolt", "edrv"])
@override_settings(HUB_RETENTION_DAYS=7, HUB_DEDUP_DAYS=30)
def test_an_8_day_old_captured_request_is_refused_after_the_purge(client, provider):
    source, (secret,) = make_source(provider)
    SubscriptionFactory()
    body = gridx_body() if provider == "gridx" else fixture_of(provider)
    captured = sign(source, body, secret)
    assert post(client, source, body, captured).status_code == 200
    age(days=8)
    assert purge_old_events() == 1
    Delivery.objects.all().delete()

    again = post(client, source, body, captured)
    assert again.status_code == 200  # answered like any duplicate: a sender stops retrying
    assert not Event.objects.exists()
    assert not Delivery.objects.exists()


@override_settings(HUB_RETENTION_DAYS=7, HUB_DEDUP_DAYS=30)
def test_the_ledger_answers_duplicate_and_forgets_after_the_dedup_days(client):
    source, (secret,) = make_source("gridx")
    body = gridx_body()
    assert post(client, source, body, sign(source, body, secret)).json()["duplicate"] is False
    age(days=8)
    purge_old_events()
    assert SeenEvent.objects.filter(source=source).count() == 1
    assert post(client, source, body, sign(source, body, secret)).json()["duplicate"] is True

    SeenEvent.objects.update(received_at=timezone.now() - timedelta(days=31))
    purge_old_events()
    assert not SeenEvent.objects.exists()


def test_a_batch_insert_skips_ids_in_the_ledger():
    kept = EventFactory(external_id="still-here")
    source = kept.source
    SeenEvent.objects.create(source=source, external_id="seen", received_at=timezone.now())
    seen = Event(
        source=source,
        external_id="seen",
        type="t",
        received_at=timezone.now(),
        headers={},
        raw_body=b"{}",
        payload={},
    )
    new = Event(**{**{f: getattr(seen, f) for f in ("source", "type", "received_at")}})
    new.external_id, new.headers, new.raw_body, new.payload = "new", {}, b"{}", {}
    ids = insert_events([seen, new])
    assert ids[0] is None and ids[1] is not None
    assert set(Event.objects.values_list("external_id", flat=True)) == {"still-here", "new"}


@override_settings(HUB_RETENTION_DAYS=7)
def test_the_purge_keeps_the_ids_of_other_sources_apart():
    first, second = make_source("gridx")[0], make_source("gridx")[0]
    EventFactory(source=first, external_id="same")
    age(days=8)
    purge_old_events()
    assert list(SeenEvent.objects.values_list("source_id", "external_id")) == [(first.pk, "same")]
    EventFactory(source=second, external_id="same")
    assert Event.objects.get().source == second
