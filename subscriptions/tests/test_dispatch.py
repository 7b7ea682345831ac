"""Asking the workers to fan out: at most one request per gap, a broker outage loses nothing,
and one fan-out request covers every pending event."""

import logging
import uuid
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import override_settings
from kombu.exceptions import OperationalError as BrokerError

from conftest import redis_url
from receivers.models import Event, EventStatus
from receivers.tests.factories import EventFactory
from subscriptions import dispatch
from subscriptions.dispatch import LocalGate, RedisGate, make_gate, publish_fan_out
from subscriptions.models import Delivery
from subscriptions.services import fanout
from subscriptions.tests.factories import SubscriptionFactory


@pytest.fixture
def clock(monkeypatch):
    """dispatch's time.monotonic, set by the test."""
    fake = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(
        dispatch, "time", SimpleNamespace(monotonic=lambda: fake.now, sleep=mock.Mock())
    )
    return fake


def test_local_gate_lets_the_first_through_and_makes_the_next_wait(clock):
    gate = LocalGate(gap=0.05)
    assert gate.wait_seconds() == 0.0
    wait = gate.wait_seconds()
    assert 0 < wait <= 0.05
    clock.now += 0.03
    assert 0 < gate.wait_seconds() <= 0.02 + 1e-9
    # Asking does not extend the gap: once it is over, the next request goes through.
    clock.now += 0.02
    assert gate.wait_seconds() == 0.0
    assert 0 < gate.wait_seconds() <= 0.05


def test_local_gate_has_no_memory_beyond_the_gap(clock):
    gate = LocalGate(gap=2.0)
    assert gate.wait_seconds() == 0.0
    clock.now += 60
    assert gate.wait_seconds() == 0.0


@pytest.fixture
def gate_key(monkeypatch):
    """A key of this test's own, deleted before and after."""
    import redis

    key = f"{dispatch.GATE_KEY}:test-{uuid.uuid4().hex}"
    monkeypatch.setattr(dispatch, "GATE_KEY", key)
    client = redis.Redis.from_url(redis_url())
    client.delete(key)
    yield key, client
    client.delete(key)
    client.close()


@pytest.mark.redis
def test_redis_gate_is_shared_by_every_gate(gate_key):
    key, client = gate_key
    gap = 5.0
    first, second = RedisGate(redis_url(), gap=gap), RedisGate(redis_url(), gap=gap)
    assert first.wait_seconds() == 0.0
    assert client.exists(key) == 1
    assert 0 < client.pttl(key) <= gap * 1000
    wait = second.wait_seconds()
    assert 0 < wait <= gap
    assert 0 < first.wait_seconds() <= gap
    # Once the key is gone (the gap is over), the next request goes through again.
    client.delete(key)
    assert second.wait_seconds() == 0.0
    assert 0 < first.wait_seconds() <= gap


@pytest.mark.redis
def test_redis_gate_key_expires_after_the_gap(gate_key):
    key, client = gate_key
    gate = RedisGate(redis_url(), gap=0.25)
    assert gate.wait_seconds() == 0.0
    assert 0 < client.pttl(key) <= 250


def test_redis_gate_without_redis_lets_the_request_through():
    gate = RedisGate("redis://127.0.0.1:1/0", gap=5.0)
    assert gate.wait_seconds() == 0.0
    assert gate.wait_seconds() == 0.0


def test_make_gate_follows_the_broker():
    with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
        assert isinstance(make_gate(), RedisGate)
    with override_settings(CELERY_BROKER_URL="filesystem://"):
        assert isinstance(make_gate(), LocalGate)


def test_publish_fan_out_sends_one_request():
    with mock.patch("subscriptions.tasks.fan_out_pending.apply_async") as apply_async:
        assert publish_fan_out() is True
    apply_async.assert_called_once_with(retry=False)


def test_publish_fan_out_returns_false_and_logs_when_the_broker_is_down(caplog):
    with (
        caplog.at_level(logging.WARNING, logger="subscriptions.dispatch"),
        mock.patch(
            "subscriptions.tasks.fan_out_pending.apply_async",
            side_effect=BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        ),
    ):
        assert publish_fan_out() is False
    (record,) = [r for r in caplog.records if r.name == "subscriptions.dispatch"]
    assert record.levelno == logging.WARNING
    assert "Connection refused" in record.getMessage()


def test_publish_fan_out_survives_any_exception():
    with mock.patch(
        "subscriptions.tasks.fan_out_pending.apply_async", side_effect=ConnectionResetError()
    ):
        assert publish_fan_out() is False


@pytest.mark.django_db
@pytest.mark.parametrize("count, chunks", [(5, 3), (4, 2), (1, 1)])
def test_fan_out_pending_covers_every_pending_event_chunk_by_chunk(monkeypatch, count, chunks):
    monkeypatch.setattr(fanout, "FAN_OUT_CHUNK", 2)
    sub = SubscriptionFactory()
    events = [EventFactory() for _ in range(count)]
    done = EventFactory(status=EventStatus.IGNORED)
    with mock.patch.object(fanout, "fan_out", wraps=fanout.fan_out) as fan_out:
        assert fanout.fan_out_pending() == count
    # Oldest first, at most FAN_OUT_CHUNK per call, until a look finds none (or fewer) left.
    called = [list(call.args[0]) for call in fan_out.call_args_list]
    assert len(called) == chunks
    assert all(len(ids) <= 2 for ids in called)
    assert [pk for ids in called for pk in ids] == [e.pk for e in events]
    assert not Event.objects.filter(status=EventStatus.PENDING).exists()
    assert set(
        Event.objects.filter(pk__in=[e.pk for e in events]).values_list("status", flat=True)
    ) == {EventStatus.DISPATCHED}
    assert Event.objects.get(pk=done.pk).status == EventStatus.IGNORED
    assert sorted(Delivery.objects.filter(subscription=sub).values_list("event_id", flat=True)) == [
        e.pk for e in events
    ]


@pytest.mark.django_db
def test_fan_out_pending_without_subscriptions_leaves_nothing_pending(monkeypatch):
    monkeypatch.setattr(fanout, "FAN_OUT_CHUNK", 2)
    EventFactory.create_batch(3)
    assert fanout.fan_out_pending() == 0
    assert set(Event.objects.values_list("status", flat=True)) == {EventStatus.IGNORED}
    assert not Delivery.objects.exists()


@pytest.mark.django_db
def test_fan_out_pending_with_nothing_pending_does_nothing():
    EventFactory(status=EventStatus.DISPATCHED)
    with mock.patch.object(fanout, "fan_out", wraps=fanout.fan_out) as fan_out:
        assert fanout.fan_out_pending() == 0
    fan_out.assert_not_called()
