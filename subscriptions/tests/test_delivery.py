"""Delivery against a real local HTTP receiver: signing, retries, permanence, isolation rules."""

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from receivers.models import EventStatus
from receivers.tests.factories import EventFactory
from subscriptions import sender, targets
from subscriptions.models import Attempt, Delivery, DeliveryStatus, PayloadFormat
from subscriptions.services import controls, drain, fanout, outcomes, replay, sweep
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer

pytestmark = pytest.mark.django_db


def deliver(event, *subs):
    fanout.fan_out([event.pk])
    for sub in subs:
        drain.drain_subscription(sub.pk)


def verify_standard(secret: str, received) -> dict:
    return Webhook(secret).verify(received.body, received.headers)


def test_delivery_is_signed_per_standard_webhooks(receiver):
    sub = SubscriptionFactory(url=receiver.url)
    event = EventFactory()
    deliver(event, sub)
    (got,) = receiver.wait_for(1)
    assert verify_standard(sub.secret, got) == event.payload
    assert got.body == bytes(event.raw_body)
    delivery = Delivery.objects.get()
    assert got.headers["webhook-id"] == delivery.webhook_id
    assert delivery.status == DeliveryStatus.SUCCEEDED
    attempt = Attempt.objects.get()
    assert (attempt.status_code, attempt.response_excerpt) == (200, "ok")


def test_rotation_sends_both_signatures_and_each_verifies(receiver):
    sub = SubscriptionFactory(url=receiver.url)
    old = sub.secret
    sub.previous_secret, sub.secret = old, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    sub.previous_secret_expires_at = timezone.now() + timedelta(hours=1)
    sub.save()
    deliver(EventFactory(), sub)
    (got,) = receiver.wait_for(1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verify_standard(old, got)
    verify_standard(sub.secret, got)


def test_cloudevents_envelope_is_the_same_for_every_provider(receiver):
    sub = SubscriptionFactory(url=receiver.url, payload_format=PayloadFormat.CLOUDEVENTS)
    event = EventFactory(type="session.started")
    deliver(event, sub)
    (got,) = receiver.wait_for(1)
    envelope = json.loads(got.body)
    assert envelope["specversion"] == "1.0"
    assert (envelope["id"], envelope["type"], envelope["data"]) == (
        event.external_id,
        "session.started",
        event.payload,
    )
    assert envelope["source"].endswith(f"/hooks/{event.source.slug}/")
    assert got.headers["content-type"] == "application/cloudevents+json"
    verify_standard(sub.secret, got)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "ping-like/anything", True),
        (["appliance/*"], "appliance/online", True),
        (["appliance/*"], "ev/plugged", False),
        (["session.*"], "session.ended", True),
        (["ev/plugged"], "ev/plugged", True),
        (["ev/plugged"], "ev/unplugged", False),
    ],
)
def test_event_type_patterns(patterns, event_type, expected):
    sub = SubscriptionFactory(event_types=patterns)
    fanout.fan_out([EventFactory(type=event_type).pk])
    assert Delivery.objects.filter(subscription=sub).exists() is expected


def test_sources_restrict_a_subscription():
    event = EventFactory()
    other = EventFactory()
    sub = SubscriptionFactory()
    sub.sources.set([event.source])
    fanout.fan_out([event.pk, other.pk])
    assert list(Delivery.objects.values_list("event_id", flat=True)) == [event.pk]
    other.refresh_from_db()
    assert other.status == EventStatus.IGNORED


def test_test_events_are_stored_but_not_relayed():
    SubscriptionFactory()
    event = EventFactory(is_test=True)
    fanout.fan_out([event.pk])
    assert not Delivery.objects.exists()


def test_fan_out_twice_creates_one_delivery_per_subscription():
    SubscriptionFactory()
    event = EventFactory()
    fanout.fan_out([event.pk])
    event.status = EventStatus.PENDING
    event.save()
    fanout.fan_out([event.pk])
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried_later(receiver, code):
    receiver.answers = [Answer(status=code)]
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.RETRYING
    # 5 s ± 10% jitter, measured a moment after it was scheduled.
    assert 3.5 <= (delivery.next_attempt_at - timezone.now()).total_seconds() <= 5.5
    delivery.next_attempt_at = timezone.now()
    delivery.save()
    drain.drain_subscription(sub.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert [a.status_code for a in delivery.attempts.all()] == [code, 200]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_retry_after_is_honoured_within_bounds(receiver):
    receiver.answers = [Answer(status=429, headers={"Retry-After": "120"})]
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    delivery = Delivery.objects.get()
    assert 115 <= (delivery.next_attempt_at - timezone.now()).total_seconds() <= 121
    assert sender.retry_after_seconds("999999999", timezone.now()) == sender.MAX_RETRY_AFTER


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_other_client_errors_are_permanent(receiver, code):
    receiver.default = Answer(status=code, body=b"no thanks")
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.FAILED, 1)
    sub.refresh_from_db()
    assert sub.is_active


def test_410_disables_the_subscription(receiver):
    receiver.default = Answer(status=410)
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    sub.refresh_from_db()
    assert not sub.is_active
    assert "410" in sub.disabled_reason
    assert Delivery.objects.get().status == DeliveryStatus.FAILED


def test_redirects_are_not_followed(receiver):
    receiver.default = Answer(status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"})
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    assert len(receiver.requests) == 1
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "redirect" in delivery.last_error


def test_timeout_is_retried_and_backs_the_target_off(receiver):
    receiver.answers = [Answer(delay=2.5)]
    sub = SubscriptionFactory(url=receiver.url, timeout_seconds=1)
    fanout.fan_out([EventFactory().pk, EventFactory().pk])
    drain.drain_subscription(sub.pk)
    attempt = Attempt.objects.get()
    assert attempt.status_code is None and "timed out" in attempt.error
    sub.refresh_from_db()
    assert sub.backoff_until > timezone.now()
    # The second delivery was not tried against a target that just hung.
    statuses = sorted(Delivery.objects.values_list("status", flat=True))
    assert statuses == [DeliveryStatus.PENDING, DeliveryStatus.RETRYING]


def test_the_last_attempt_leaves_the_delivery_failed_and_replayable(receiver):
    receiver.default = Answer(status=503)
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    delivery = Delivery.objects.get()
    for _ in range(len(outcomes.RETRY_SCHEDULE) - 1):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        drain.drain_subscription(sub.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt_count) == (DeliveryStatus.FAILED, 10)
    receiver.default = Answer(status=200)
    assert replay.replay_deliveries([delivery.pk]) == 1
    drain.drain_subscription(sub.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    attempts = list(delivery.attempts.all())
    assert len(attempts) == 11 and attempts[-1].is_replay and not attempts[0].is_replay
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_replaying_an_event_reaches_a_subscription_created_after_it(receiver):
    event = EventFactory()
    fanout.fan_out([event.pk])
    sub = SubscriptionFactory(url=receiver.url)
    replay.replay_event(event)
    drain.drain_subscription(sub.pk)
    receiver.wait_for(1)
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED


@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_private_targets_are_refused_by_default(receiver):
    sub = SubscriptionFactory(url=receiver.url)
    deliver(EventFactory(), sub)
    assert receiver.requests == []
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "HUB_ALLOW_PRIVATE_TARGETS" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/"],
)
@override_settings(HUB_ALLOW_PRIVATE_TARGETS=False)
def test_internal_addresses_are_refused(url):
    with pytest.raises(targets.TargetRefused):
        targets.check_target(url)


def test_sweep_fans_out_events_whose_message_was_lost():
    SubscriptionFactory()
    event = EventFactory(received_at=timezone.now() - timedelta(minutes=1))
    counts = sweep.sweep()
    assert counts["stale_events"] == 1
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED
    assert Delivery.objects.count() == 1


def test_sweep_hands_out_deliveries_whose_worker_died(receiver):
    SubscriptionFactory(url=receiver.url)
    event = EventFactory()
    fanout.fan_out([event.pk])
    Delivery.objects.update(
        status=DeliveryStatus.SENDING, claimed_until=timezone.now() - timedelta(seconds=1)
    )
    counts = sweep.sweep()
    assert counts["expired_claims"] == 1
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED  # eager drain
    receiver.wait_for(1)


def test_sweep_disables_a_subscription_failing_for_three_days():
    sub = SubscriptionFactory(failing_since=timezone.now() - timedelta(hours=73))
    EventFactory()
    sweep.sweep()
    sub.refresh_from_db()
    assert not sub.is_active and "72 hours" in sub.disabled_reason


def test_a_paused_subscription_queues_and_sends_on_resume(receiver):
    from subscriptions.models import Subscription

    sub = SubscriptionFactory(url=receiver.url)
    controls.pause(Subscription.objects.filter(pk=sub.pk))
    event = EventFactory()
    fanout.fan_out([event.pk])
    drain.drain_subscription(sub.pk)
    assert receiver.requests == []
    assert Delivery.objects.get().status == DeliveryStatus.PENDING
    controls.resume(Subscription.objects.filter(pk=sub.pk))  # eager: drains at once
    receiver.wait_for(1)
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED


@override_settings(HUB_LEASE_MARGIN_SECONDS=1)
def test_a_slow_batch_keeps_its_claims(receiver):
    receiver.default = Answer(delay=0.8)
    sub = SubscriptionFactory(url=receiver.url, timeout_seconds=2)
    fanout.fan_out([EventFactory().pk for _ in range(5)])
    expired_before_each_send = []
    real_post = sender.post

    def watching_post(*args, **kwargs):
        expired_before_each_send.append(
            Delivery.objects.filter(
                status=DeliveryStatus.SENDING, claimed_until__lt=timezone.now()
            ).count()
        )
        return real_post(*args, **kwargs)

    with mock.patch.object(sender, "post", watching_post):
        drain.drain_subscription(sub.pk)
    # Five answers of 0.8 s outlast the first 3 s claim: it was renewed before running out.
    assert expired_before_each_send == [0] * 5
    assert Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 5
