"""Backfill: the events a subscription takes, narrowed by the request, sent in received order,
in chunks, resumable, and never twice unless asked."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from receivers.models import EventStatus
from receivers.tests.factories import EventFactory, make_source
from subscriptions.models import Backfill, BackfillState, Delivery, DeliveryStatus
from subscriptions.services import alerts, backfill, drain, sweep
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


@pytest.fixture
def history():
    """Events of two sources over the last hours, received before any subscription."""
    now = timezone.now()
    gridx, _ = make_source("gridx", slug="gridx-a")
    edrv, _ = make_source("edrv", slug="edrv-a")
    events = []
    for minutes, source, kind in [
        (300, gridx, "appliance/online"),  # before the range asked below
        (170, gridx, "appliance/online"),
        (160, edrv, "session.started"),
        (150, gridx, "ev/plugged"),
        (140, gridx, "appliance/offline"),
        (130, edrv, "session.ended"),
        (120, gridx, "appliance/online"),
    ]:
        events.append(
            EventFactory(
                source=source,
                type=kind,
                received_at=now - timedelta(minutes=minutes),
                status=EventStatus.IGNORED,
            )
        )
    EventFactory(source=gridx, type="ping", is_test=True, received_at=now - 2 * HOUR)
    return events


def asked(**fields) -> backfill.Request:
    now = timezone.now()
    return backfill.Request(**{"received_after": now - 3 * HOUR, "received_before": now, **fields})


def received_types(receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.requests]


def test_events_from_before_the_subscription_are_sent_in_received_order(history, receiver):
    sub = SubscriptionFactory(url=receiver.url, event_types=["appliance/*", "ev/*"])
    job = backfill.start(sub, asked())
    assert job.total == 4
    assert backfill.run(job.pk) == 4
    drain.drain_subscription(sub.pk)
    receiver.wait_for(4)
    expected = [e for e in history[1:] if e.type.startswith(("appliance/", "ev/"))]
    assert [json.loads(r.body)["id"] for r in receiver.requests] == [
        e.external_id for e in expected
    ]
    job.refresh_from_db()
    assert (job.state, job.examined, job.queued, job.skipped) == (BackfillState.DONE, 4, 4, 0)
    # Events that had no subscriber now have a delivery.
    assert {e.status for e in type(history[0]).objects.filter(deliveries__isnull=False)} == {
        EventStatus.DISPATCHED
    }


def test_types_and_sources_narrow_what_the_subscription_takes(history):
    gridx, edrv = history[1].source, history[2].source
    sub = SubscriptionFactory(event_types=["*"])
    assert backfill.preview(sub, asked())["count"] == 6
    assert backfill.preview(sub, asked(event_types=["appliance/*"]))["count"] == 3
    assert backfill.preview(sub, asked(sources=[edrv]))["count"] == 2
    chooser = SubscriptionFactory(event_types=["*"])
    chooser.sources.set([gridx])
    assert backfill.preview(chooser, asked(sources=[edrv]))["count"] == 0
    assert backfill.preview(chooser, asked())["count"] == 4


def test_the_hubs_alerts_are_sent_only_where_their_source_is_chosen(history):
    alerts.subscription_disabled(SubscriptionFactory().pk, "stopped")
    everything = SubscriptionFactory(event_types=["*"])
    assert backfill.preview(everything, asked())["count"] == 6
    watcher = SubscriptionFactory(event_types=["subscription.*"])
    watcher.sources.set([alerts.hub_source()])
    assert backfill.preview(watcher, asked())["count"] == 1


def test_what_was_delivered_is_skipped_unless_resend_is_asked(history, receiver):
    sub = SubscriptionFactory(url=receiver.url, event_types=["session.*"])
    started, ended = history[2], history[5]
    DeliveryFactory(event=started, subscription=sub, status=DeliveryStatus.SUCCEEDED)
    failed = DeliveryFactory(event=ended, subscription=sub, status=DeliveryStatus.FAILED)
    assert backfill.preview(sub, asked()) == {"count": 2, "already_delivered": 1}
    job = backfill.start(sub, asked())
    backfill.run(job.pk)
    job.refresh_from_db()
    assert (job.queued, job.skipped) == (1, 1)
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.PENDING and failed.replay_requested

    again = backfill.start(sub, asked(resend=True))
    backfill.run(again.pk)
    again.refresh_from_db()
    assert (again.queued, again.skipped) == (1, 1)  # the delivered one; the other is on its way
    drain.drain_subscription(sub.pk)
    receiver.wait_for(2)
    assert sorted(received_types(receiver)) == ["session.ended", "session.started"]
    assert Delivery.objects.filter(subscription=sub).count() == 2


def test_a_run_goes_chunk_by_chunk_and_a_lost_one_is_resumed_by_the_sweep(
    history, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(backfill, "CHUNK", 2)
    sub = SubscriptionFactory(event_types=["*"], is_paused=True)
    job = backfill.start(sub, asked())
    # The worker dies after the first chunk: its lease is left behind.
    events = backfill.events_for(sub, backfill.request_of(job))
    Backfill.objects.filter(pk=job.pk).update(
        state=BackfillState.RUNNING, lease_until=timezone.now() + HOUR
    )
    assert backfill.run_chunk(job.pk, events) == 2
    assert backfill.run(job.pk) == 0  # the lease still holds it
    Backfill.objects.filter(pk=job.pk).update(lease_until=timezone.now() - HOUR)
    with django_capture_on_commit_callbacks(execute=True):
        counts = sweep.sweep()
    assert counts["backfills"] == 1  # run inline: the test's tasks are eager
    job.refresh_from_db()
    assert (job.state, job.examined, job.queued) == (BackfillState.DONE, 6, 6)
    order = Delivery.objects.filter(subscription=sub).order_by("next_attempt_at", "pk")
    assert [d.event.received_at for d in order] == sorted(e.received_at for e in history[1:])


def test_a_run_out_of_time_hands_over_to_the_next(history, monkeypatch):
    sub = SubscriptionFactory(event_types=["*"], is_paused=True)
    job = backfill.start(sub, asked())
    asked_for = []
    monkeypatch.setattr(backfill, "request_run", asked_for.append)
    assert backfill.run(job.pk, max_seconds=0) == 0
    assert asked_for == [job.pk]
    job.refresh_from_db()
    assert job.state == BackfillState.RUNNING and job.lease_until <= timezone.now()
    assert backfill.run(job.pk) == 6  # the next run takes it at once
