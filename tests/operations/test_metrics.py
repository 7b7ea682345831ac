"""/metrics: what receiving and delivering are counted as, the gauges, and the token."""

import json
import threading
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from hub import metrics as exposition
from hub.models import MetricTotal
from receivers import metrics
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import post, sign
from subscriptions.models import Delivery, DeliveryStatus
from subscriptions.services import drain, fanout, outcomes
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[tuple, float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    exposition.flush()
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def gridx_body(event_id: str = "e-1", **fields) -> bytes:
    fields = {"id": event_id, "type": "appliance/online", "specVersion": "1.0", **fields}
    return json.dumps({"source": "/s/1", "time": "2026-03-02T08:15:30Z", "data": {}, **fields})


def test_each_receive_outcome_is_counted_by_source_and_reason(client):
    source, (secret,) = make_source("gridx")
    fenced, (fenced_secret,) = make_source("gridx", allowed_ips="10.9.9.9")
    body = gridx_body().encode()
    assert post(client, source, body, sign(source, body, secret)).status_code == 200
    assert post(client, source, body, sign(source, body, secret)).status_code == 200
    tampered = sign(source, body, secret)
    assert post(client, source, body + b" ", tampered).status_code == 401
    not_json = b"{nope"
    assert post(client, source, not_json, sign(source, not_json, secret)).status_code == 400
    assert post(client, fenced, body, sign(fenced, body, fenced_secret)).status_code == 401
    assert client.post("/hooks/nobody/", body, content_type="application/json").status_code == 404
    with override_settings(HUB_MAX_BODY_BYTES=10):
        assert post(client, source, body, sign(source, body, secret)).status_code == 413

    samples = scrape(client)
    name = "hub_events_received_total"
    slug = source.slug
    assert value(samples, name, source=slug, outcome="stored", reason="") == 1
    assert value(samples, name, source=slug, outcome="duplicate", reason="") == 1
    assert value(samples, name, source=slug, outcome="rejected", reason="signature") == 1
    assert value(samples, name, source=slug, outcome="rejected", reason="bad_payload") == 1
    assert value(samples, name, source=fenced.slug, outcome="rejected", reason="ip_not_allowed")
    unknown = metrics.UNKNOWN_SOURCE
    assert value(samples, name, source=unknown, outcome="rejected", reason="unknown_source") == 1
    assert value(samples, name, source=unknown, outcome="rejected", reason="too_large") == 1


def deliver(event, sub) -> None:
    fanout.fan_out([event.pk])
    drain.drain_subscription(sub.pk)


def test_delivery_outcomes_and_latencies_by_subscription(client):
    with TestReceiver() as receiver:
        receiver.answers = [Answer(status=200), Answer(status=500), Answer(status=400)]
        sub = SubscriptionFactory(url=receiver.url)
        received = timezone.now() - timedelta(seconds=3)
        deliver(EventFactory(received_at=received), sub)
        deliver(EventFactory(), sub)
        deliver(EventFactory(), sub)
    samples = scrape(client)
    label = str(sub.pk)
    attempts = "hub_delivery_attempts_total"
    assert value(samples, attempts, subscription=label, outcome="success") == 1
    assert value(samples, attempts, subscription=label, outcome="retry") == 1
    assert value(samples, attempts, subscription=label, outcome="failed") == 1
    assert value(samples, "hub_delivery_attempt_duration_seconds_count", subscription=label) == 3
    assert (
        value(
            samples, "hub_delivery_attempt_duration_seconds_bucket", subscription=label, le="+Inf"
        )
        == 3
    )
    # The first event arrived three seconds before it was delivered.
    latency = "hub_receive_to_delivered_seconds"
    assert value(samples, f"{latency}_count", subscription=label) == 1
    assert value(samples, f"{latency}_bucket", subscription=label, le="2.5") == 0
    assert value(samples, f"{latency}_bucket", subscription=label, le="5.0") == 1
    assert 3 <= value(samples, f"{latency}_sum", subscription=label) < 5


def test_no_retry_left_counts_as_expired(client):
    with TestReceiver(default=Answer(status=503)) as receiver:
        sub = SubscriptionFactory(url=receiver.url)
        deliver(EventFactory(), sub)
        for _ in range(len(outcomes.RETRY_SCHEDULE) - 1):
            Delivery.objects.update(next_attempt_at=timezone.now())
            drain.drain_subscription(sub.pk)
    samples = scrape(client)
    attempts = "hub_delivery_attempts_total"
    retries = len(outcomes.RETRY_SCHEDULE) - 1
    assert value(samples, attempts, subscription=str(sub.pk), outcome="retry") == retries
    assert value(samples, attempts, subscription=str(sub.pk), outcome="expired") == 1


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_a_refused_target_is_counted_and_not_timed(client):
    sub = SubscriptionFactory(url="http://127.0.0.1:9/hook")
    deliver(EventFactory(), sub)
    samples = scrape(client)
    label = str(sub.pk)
    attempts = "hub_delivery_attempts_total"
    assert value(samples, attempts, subscription=label, outcome="refused_target") == 1
    assert value(samples, "hub_delivery_attempt_duration_seconds_count", subscription=label) is None


def test_gauges_backlog_oldest_undelivered_and_subscription_states(client):
    waiting = SubscriptionFactory(is_paused=True)
    SubscriptionFactory(is_active=False)
    active = SubscriptionFactory()
    old = EventFactory(received_at=timezone.now() - timedelta(minutes=10))
    fanout.fan_out([old.pk])
    Delivery.objects.filter(subscription=active).update(status=DeliveryStatus.SUCCEEDED)
    pending = EventFactory(received_at=timezone.now() - timedelta(minutes=1))
    samples = scrape(client)
    assert value(samples, "hub_deliveries_waiting", subscription=str(waiting.pk)) == 1
    assert value(samples, "hub_deliveries_waiting", subscription=str(active.pk)) is None
    assert value(samples, "hub_subscriptions", state="active") == 1
    assert value(samples, "hub_subscriptions", state="paused") == 1
    assert value(samples, "hub_subscriptions", state="disabled") == 1
    # The paused subscription's delivery is not counted: the pending event is the oldest.
    age = value(samples, "hub_oldest_undelivered_event_age_seconds")
    assert 60 <= age < 120
    pending.delete()
    Delivery.objects.update(status=DeliveryStatus.SUCCEEDED)
    assert value(scrape(client), "hub_oldest_undelivered_event_age_seconds") == 0


def test_totals_from_several_processes_add_up(client):
    """Each process's flush adds to the same rows: the sink is an additive upsert."""
    counter = metrics.received
    for _process in range(3):
        counter.inc("gridx-a", "stored", "")
        exposition.flush()
    assert MetricTotal.objects.get(metric=counter.name).value == 3
    samples = scrape(client)
    name = "hub_events_received_total"
    assert value(samples, name, source="gridx-a", outcome="stored", reason="") == 3


def test_a_failed_flush_keeps_the_counts_for_the_next_one():
    flusher = metrics.Flusher()
    stored: list[dict] = []

    def sink(amounts):
        if not stored:
            stored.append({})
            raise ConnectionError("database down")
        stored.append(amounts)

    flusher.configure(sink, interval=60)
    metrics.received.inc("s", "stored", "")
    assert flusher.flush() is False
    metrics.received.inc("s", "stored", "")
    assert flusher.flush() is True
    assert stored[-1] == {("hub_events_received", ("s", "stored", ""), ""): 2.0}


def test_counting_from_many_threads_loses_nothing():
    def count():
        for _ in range(10_000):
            metrics.received.inc("t", "stored", "")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.take() == {("hub_events_received", ("t", "stored", ""), ""): 40_000.0}


@override_settings(HUB_METRICS_TOKEN="s3cret-metrics-token")
def test_the_token_guards_metrics(client):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401 and b"s3cret" not in wrong.content
    other_scheme = client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics-token")
    assert other_scheme.status_code == 401
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert right.status_code == 200
    assert b"# TYPE hub_events_received_total counter" in right.content


def test_metrics_answer_any_host_and_refuse_other_methods(client):
    assert client.get("/metrics", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_every_declared_metric_is_listed_in_the_operations_doc():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    names = [*metrics.FAMILIES, *(f.name for f in exposition.gauges())]
    assert [n for n in names if f"`{n}" not in doc] == []
