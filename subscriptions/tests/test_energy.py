"""The energy options in the delivery services, against the real local fake subscriber: filters
at fan-out, expiry, per-key order, coalescing and the priority queues (docs/energy.md).
The same with real processes is in tests/reliability/test_energy_options.py."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receivers import metrics
from receivers.models import EventStatus
from receivers.tests.factories import EventFactory, SourceFactory
from subscriptions import work
from subscriptions.models import Delivery, DeliveryStatus, Priority
from subscriptions.services import drain, fanout, replay, sequencing, sweep
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer

pytestmark = pytest.mark.django_db


def unsent_counts() -> dict[tuple[str, str], float]:
    return {
        labels: amount
        for (name, labels, _part), amount in metrics.take().items()
        if name == "hub_deliveries_unsent"
    }


def reading(device: str, n: int, event_type: str = "ev/measurement", **fields):
    payload = {"id": f"{device}-{n}", "type": event_type, "data": {"applianceID": device, "n": n}}
    return EventFactory(external_id=f"{device}-{n}", type=event_type, payload=payload, **fields)


def sent(receiver) -> list[str]:
    return [json.loads(r.body)["id"] for r in receiver.requests]


def by_device(device: str):
    """Answers 500 to the deliveries of one device, 200 to the others."""
    return lambda got: (
        Answer(500) if json.loads(got.body)["data"]["applianceID"] == device else Answer()
    )


# Filters


def test_one_sites_events_go_to_one_service():
    north, south = SourceFactory(slug="site-north"), SourceFactory(slug="site-south")
    north_only = SubscriptionFactory(
        filter=[{"path": "data.site", "op": "equals", "value": "north"}]
    )
    everything = SubscriptionFactory()
    for source, site in ((north, "north"), (south, "south")):
        EventFactory(source=source, payload={"data": {"site": site}})
    fanout.fan_out_pending()
    assert Delivery.objects.filter(subscription=north_only).count() == 1
    assert Delivery.objects.get(subscription=north_only).event.payload["data"]["site"] == "north"
    assert Delivery.objects.filter(subscription=everything).count() == 2


def test_an_event_no_filter_lets_through_is_ignored():
    SubscriptionFactory(filter=[{"path": "data.power", "op": "gt", "value": 1000}])
    low = EventFactory(payload={"data": {"power": 200}})
    high = EventFactory(payload={"data": {"power": 2000}})
    fanout.fan_out([low.pk, high.pk])
    low.refresh_from_db()
    high.refresh_from_db()
    assert (low.status, high.status) == (EventStatus.IGNORED, EventStatus.DISPATCHED)


def test_a_subscription_whose_stored_filter_no_longer_parses_receives_nothing(caplog):
    broken = SubscriptionFactory()
    broken.__class__.objects.filter(pk=broken.pk).update(filter=[{"op": "equals"}])
    fine = SubscriptionFactory()
    fanout.fan_out([EventFactory().pk])
    assert list(Delivery.objects.values_list("subscription", flat=True)) == [fine.pk]
    assert "invalid options" in caplog.text


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"expire_after": 60},
        {"ordering_key": "data.applianceID"},
        {"filter": [{"path": "data.n", "op": "gt", "value": 0}]},
    ],
)
def test_a_fan_out_costs_the_same_queries_for_one_event_or_many(options):
    SubscriptionFactory(**options)

    def queries(count: int, start: int) -> int:
        ids = [reading("a", n).pk for n in range(start, start + count)]
        with CaptureQueriesContext(connection) as captured:
            fanout.fan_out(ids)
        return len(captured)

    assert queries(1, 1) == queries(5, 10)


def test_a_drain_with_every_option_costs_the_same_queries_for_few_deliveries_or_many(receiver):
    sub = SubscriptionFactory(
        url=receiver.url,
        ordering_key="data.applianceID",
        coalesce=[{"types": ["appliance/online"], "key": "data.applianceID"}],
        expire_after=600,
    )

    def queries(count: int, start: int) -> int:
        fanout.fan_out([reading(f"d{n}", n).pk for n in range(start, start + count)])
        # Both drains then write the subscription's health (at most once a second otherwise).
        type(sub).objects.filter(pk=sub.pk).update(last_success_at=None)
        with CaptureQueriesContext(connection) as captured:
            drain.drain_subscription(sub.pk)
        return len(captured)

    assert queries(2, 0) == queries(20, 100)
    assert len(receiver.requests) == 22


def test_a_plain_subscription_stores_no_keys_and_no_deadline():
    sub = SubscriptionFactory()
    fanout.fan_out([reading("a", 1).pk])
    delivery = Delivery.objects.get()
    assert (delivery.order_key, delivery.coalesce_key, delivery.expires_at) == ("", "", None)
    assert not sequencing.applies(sub)


# Expiry


def test_a_delivery_older_than_its_expiry_is_not_sent_and_is_counted(receiver):
    sub = SubscriptionFactory(url=receiver.url, expire_after=60)
    stale = reading("a", 1, occurred_at=timezone.now() - timedelta(minutes=10))
    fresh = reading("a", 2, occurred_at=timezone.now())
    fanout.fan_out([stale.pk, fresh.pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-2"]
    expired = Delivery.objects.get(event=stale)
    assert (expired.status, expired.attempt_count) == (DeliveryStatus.EXPIRED, 0)
    assert unsent_counts() == {(str(sub.pk), "expired"): 1.0}


def test_a_delivery_waiting_for_a_retry_expires_on_time(receiver):
    receiver.default = Answer(503)
    sub = SubscriptionFactory(url=receiver.url, expire_after=60)
    fanout.fan_out([reading("a", 1).pk])
    drain.drain_subscription(sub.pk)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.RETRYING
    later = timezone.now() + timedelta(seconds=61)
    assert sweep.sweep(now=later)["expired_deliveries"] == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.EXPIRED
    assert len(receiver.requests) == 1


def test_a_delivery_that_expires_in_a_claimed_batch_is_not_sent(receiver):
    sub = SubscriptionFactory(url=receiver.url, expire_after=60)
    fanout.fan_out([reading("a", 1).pk, reading("a", 2).pk])
    batch = drain.claim_due(sub, timezone.now())
    Delivery.objects.filter(pk=batch[0].pk).update(expires_at=timezone.now())
    batch[0].expires_at = timezone.now()
    drain.send_batch(drain.sender.http_client(), sub, batch)
    assert sent(receiver) == ["a-2"]
    assert Delivery.objects.get(pk=batch[0].pk).status == DeliveryStatus.EXPIRED


def test_expired_deliveries_are_sent_again_only_when_asked(receiver):
    sub = SubscriptionFactory(url=receiver.url, expire_after=60)
    stale = reading("a", 1, occurred_at=timezone.now() - timedelta(hours=1))
    fanout.fan_out([stale.pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == []
    assert replay.replay_deliveries(Delivery.objects.values_list("pk", flat=True)) == 1
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1"]
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED


def test_expiry_per_event_type(receiver):
    sub = SubscriptionFactory(
        url=receiver.url,
        expire_after_by_type={"grid-signal-processor/*": 300},
    )
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    signal = reading("a", 1, "grid-signal-processor/limitation-of-power-consumption/set")
    signal.occurred_at = ten_minutes_ago
    signal.save()
    old_state = reading("a", 2, "appliance/online", occurred_at=ten_minutes_ago)
    fanout.fan_out([signal.pk, old_state.pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-2"]


# Order per key


def interleaved(devices: str, count: int) -> list[int]:
    return [reading(device, n).pk for n in range(1, count + 1) for device in devices]


def test_a_failing_key_holds_back_only_its_own_deliveries(receiver, monkeypatch):
    receiver.script = by_device("b")
    sub = SubscriptionFactory(url=receiver.url, ordering_key="data.applianceID")
    fanout.fan_out(interleaved("abc", 3))
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1", "b-1", "c-1", "a-2", "c-2", "a-3", "c-3"]
    held = Delivery.objects.filter(order_key="b").order_by("event_id")
    assert [d.status for d in held] == [DeliveryStatus.RETRYING, *[DeliveryStatus.PENDING] * 2]

    # Still failing and not due: nothing of b goes, and the drain asks for no new drain.
    requested = []
    monkeypatch.setattr(work, "request_drains", requested.extend)
    drain.drain_subscription(sub.pk)
    assert len(receiver.requests) == 7
    assert requested == []

    receiver.script = None
    Delivery.objects.filter(order_key="b").update(next_attempt_at=timezone.now())
    drain.drain_subscription(sub.pk)
    assert sent(receiver)[7:] == ["b-1", "b-2", "b-3"]


def test_a_key_goes_on_once_its_failing_delivery_fails_for_good(receiver):
    receiver.script = lambda got: Answer(400) if json.loads(got.body)["id"] == "b-1" else Answer()
    sub = SubscriptionFactory(url=receiver.url, ordering_key="data.applianceID")
    fanout.fan_out(interleaved("ab", 2))
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1", "b-1", "a-2", "b-2"]
    assert Delivery.objects.get(event__external_id="b-1").status == DeliveryStatus.FAILED


def test_a_key_goes_on_once_its_failing_delivery_expires(receiver):
    receiver.script = by_device("b")
    sub = SubscriptionFactory(url=receiver.url, ordering_key="data.applianceID", expire_after=3600)
    fanout.fan_out(interleaved("ab", 2))
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1", "b-1", "a-2"]
    receiver.script = None
    Delivery.objects.filter(event__external_id="b-1").update(expires_at=timezone.now())
    drain.drain_subscription(sub.pk)
    assert sent(receiver)[3:] == ["b-2"]
    assert Delivery.objects.get(event__external_id="b-1").status == DeliveryStatus.EXPIRED


def test_deliveries_without_the_key_are_not_held(receiver):
    receiver.script = lambda got: (
        Answer(500) if "applianceID" not in got.body.decode() else Answer()
    )
    sub = SubscriptionFactory(url=receiver.url, ordering_key="data.applianceID")
    keyless = [EventFactory(payload={"id": f"x-{n}", "data": {}}).pk for n in range(2)]
    fanout.fan_out([*keyless, reading("a", 1).pk])
    drain.drain_subscription(sub.pk)
    assert len(receiver.requests) == 3
    assert Delivery.objects.filter(order_key="").count() == 2


# Coalescing


def test_after_an_outage_only_the_newest_state_per_device_is_sent(receiver):
    sub = SubscriptionFactory(
        url="http://127.0.0.1:9/down",
        coalesce=[{"types": ["ev/measurement"], "key": "data.applianceID"}],
    )
    first = reading("d0", 0)
    fanout.fan_out([first.pk])
    drain.drain_subscription(sub.pk)  # connection refused: a retry waits, the target backs off
    assert Delivery.objects.get().status == DeliveryStatus.RETRYING
    fanout.fan_out([reading(f"d{n % 5}", n).pk for n in range(1, 100)])

    type(sub).objects.filter(pk=sub.pk).update(url=receiver.url, backoff_until=None)
    drain.drain_subscription(sub.pk)
    assert sorted(sent(receiver)) == ["d0-95", "d1-96", "d2-97", "d3-98", "d4-99"]
    assert Delivery.objects.filter(status=DeliveryStatus.SUPERSEDED).count() == 95
    assert unsent_counts() == {(str(sub.pk), "superseded"): 95.0}


def test_only_the_matching_types_coalesce(receiver):
    sub = SubscriptionFactory(
        url=receiver.url, coalesce=[{"types": ["ev/measurement"], "key": "data.applianceID"}]
    )
    ids = [reading("a", 1, "ev/plugged").pk, reading("a", 2).pk, reading("a", 3).pk]
    ids.append(reading("a", 4, "ev/unplugged").pk)
    fanout.fan_out(ids)
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1", "a-3", "a-4"]


def test_a_newer_state_replaces_one_that_holds_its_key(receiver):
    receiver.answers = [Answer(503)]
    sub = SubscriptionFactory(
        url=receiver.url,
        ordering_key="data.applianceID",
        coalesce=[{"types": ["ev/measurement"], "key": "data.applianceID"}],
    )
    fanout.fan_out([reading("a", 1).pk])
    drain.drain_subscription(sub.pk)
    assert Delivery.objects.get().status == DeliveryStatus.RETRYING
    fanout.fan_out([reading("a", 2).pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-1", "a-2"]
    assert Delivery.objects.get(event__external_id="a-1").status == DeliveryStatus.SUPERSEDED


def test_superseded_deliveries_are_replayable(receiver):
    sub = SubscriptionFactory(
        url=receiver.url, coalesce=[{"types": ["*"], "key": "data.applianceID"}]
    )
    fanout.fan_out([reading("a", 1).pk, reading("a", 2).pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-2"]
    older = Delivery.objects.get(event__external_id="a-1")
    assert older.status == DeliveryStatus.SUPERSEDED
    replay.replay_deliveries([older.pk])
    drain.drain_subscription(sub.pk)
    assert sent(receiver) == ["a-2", "a-1"]


# Priority


def test_drains_go_to_the_queue_of_their_priority(monkeypatch):
    published = []
    task = work.current_app.tasks[work.DRAIN_SUBSCRIPTION]
    monkeypatch.setattr(
        task, "apply_async", lambda args, **options: published.append((args[0], options))
    )
    high = SubscriptionFactory(priority=Priority.HIGH)
    normal = SubscriptionFactory()
    low = SubscriptionFactory(priority=Priority.LOW)
    work.request_drains([high.pk, normal.pk, low.pk])
    queues = {sub_id: options.get("queue") for sub_id, options in published}
    assert queues == {high.pk: "high", normal.pk: None, low.pk: "low"}


def test_every_queue_is_declared_for_workers_started_without_q():
    from django.conf import settings

    declared = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    assert declared == ["high", settings.CELERY_TASK_DEFAULT_QUEUE, "low"]
    assert set(work.QUEUES.values()) <= set(declared)
