"""A batch costs the database few statements: one claims it and reads what sending needs
(services/claiming.py), one saves its attempts and outcomes (outcomes.save_batch).

Each gives the same rows and instances as the ORM statements it replaced.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receivers.tests.factories import EventFactory
from subscriptions import sender
from subscriptions.models import Attempt, Delivery, DeliveryStatus, PayloadFormat
from subscriptions.payloads import build_request
from subscriptions.services import drain, fanout, outcomes
from subscriptions.tests.factories import SubscriptionFactory


def delivery_statements(queries: list[dict]) -> list[str]:
    return [q["sql"] for q in queries if "subscriptions_delivery" in q["sql"]]


@pytest.mark.django_db
@pytest.mark.parametrize("payload_format", [PayloadFormat.ORIGINAL, PayloadFormat.CLOUDEVENTS])
def test_one_statement_claims_a_batch_with_what_sending_needs(payload_format):
    sub = SubscriptionFactory(payload_format=payload_format)
    events = [EventFactory(headers={"Content-Type": f"application/x-{n}"}) for n in range(3)]
    fanout.fan_out([event.pk for event in events])
    # The second delivery is due first: a claim goes in order of due time.
    first = Delivery.objects.get(event=events[1])
    Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now() - timedelta(1))
    now = timezone.now()
    claimed_sub = drain.claim_subscription(sub.pk, now)
    with CaptureQueriesContext(connection) as queries:
        claimed = drain.claim_due(claimed_sub, now)
    assert len(delivery_statements(queries.captured_queries)) == 1
    assert [d.event_id for d in claimed] == [events[1].pk, events[0].pk, events[2].pk]
    assert {d.status for d in claimed} == {DeliveryStatus.SENDING}
    assert set(Delivery.objects.values_list("status", "claimed_until")) == {
        (DeliveryStatus.SENDING, drain.lease_for(claimed_sub, now))
    }
    with CaptureQueriesContext(connection) as queries:
        for delivery in claimed:
            event = next(e for e in events if e.pk == delivery.event_id)
            assert delivery.webhook_id and delivery.attempt_count == 0
            assert (delivery.event.type, delivery.event.received_at) == (
                event.type,
                event.received_at,
            )
            assert delivery.event.source.slug == event.source.slug
            body, headers = build_request(delivery, claimed_sub, now)
            if payload_format == PayloadFormat.ORIGINAL:
                assert body == bytes(event.raw_body)
                assert headers["content-type"] == event.headers["Content-Type"]
            else:
                assert f'"id":"{event.external_id}"'.encode() in body
                assert f'"data":{{"id":"{event.external_id}"'.encode() in body
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_one_statement_saves_a_batch_of_attempts_and_outcomes():
    sub = SubscriptionFactory()
    fanout.fan_out([EventFactory().pk, EventFactory().pk, EventFactory().pk])
    now = timezone.now()
    claimed = drain.claim_due(drain.claim_subscription(sub.pk, now), now)
    due_before = {d.pk: d.next_attempt_at for d in claimed}
    results = [
        sender.Result(200, 4, "ok", ""),
        sender.Result(503, 5, "busy", "", retry_after=120),
        sender.Result(404, 6, "no", ""),
    ]
    attempts = [outcomes.apply_result(d, r, now) for d, r in zip(claimed, results, strict=True)]
    with CaptureQueriesContext(connection) as queries:
        outcomes.save_batch(claimed, attempts)
    assert len(delivery_statements(queries.captured_queries)) == 1
    assert len([q for q in queries.captured_queries if "subscriptions_attempt" in q["sql"]]) == 1
    rows = {d.pk: d for d in Delivery.objects.all()}
    ok, retry, failed = (rows[d.pk] for d in claimed)
    assert (ok.status, ok.attempt_count, ok.last_status_code) == (DeliveryStatus.SUCCEEDED, 1, 200)
    assert ok.delivered_at == claimed[0].delivered_at is not None
    assert ok.next_attempt_at == due_before[ok.pk]
    assert (retry.status, retry.claimed_until) == (DeliveryStatus.RETRYING, None)
    assert retry.next_attempt_at == claimed[1].next_attempt_at > now + timedelta(seconds=100)
    assert (failed.status, failed.last_status_code, failed.delivered_at) == (
        DeliveryStatus.FAILED,
        404,
        None,
    )
    assert failed.next_attempt_at == due_before[failed.pk]
    stored = sorted(Attempt.objects.values_list("delivery_id", "status_code", "response_excerpt"))
    assert stored == sorted(
        (d.pk, r.status_code, r.excerpt) for d, r in zip(claimed, results, strict=True)
    )
