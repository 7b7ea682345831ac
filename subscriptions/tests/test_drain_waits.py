"""A drain that runs out of work keeps its subscription for a while and waits for more.

Also: claiming skips paused and disabled subscriptions, the subscription's lease and health
are written only when needed, and which tasks acknowledge their message late.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from celery import current_app as celery_app
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receivers.tests.factories import EventFactory
from subscriptions import sender, tasks
from subscriptions.models import Attempt, Delivery, DeliveryStatus, Subscription
from subscriptions.services import drain, fanout, outcomes
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import TestReceiver

# Upper bound for anything the tests wait for; nothing is expected to take near this long.
WAIT = 10.0


class RecordingNewWork(drain.NewWork):
    """drain.NewWork that tells when a drain waits, and whether an announcement woke it.

    With `first_wait`, the first wait lasts that long instead of IDLE_POLL_SECONDS, so that
    only an announcement (not the drain's own polling) can end it in time. With `gate`, the
    first wait does not end before the gate opens (it starts after it, or with `first_wait`,
    holds after it): the drain stays off the database until then.
    """

    def __init__(
        self, first_wait: float | None = None, gate: threading.Event | None = None
    ) -> None:
        super().__init__()
        self.first_wait = first_wait
        self.gate = gate
        self.waiting = threading.Event()
        self.woken: list[bool] = []

    def wait(self, subscription_id: int, seen: int, timeout: float) -> None:
        first = not self.waiting.is_set()
        self.waiting.set()
        if first and self.gate is not None and self.first_wait is None:
            assert self.gate.wait(WAIT), "the gate never opened"
        if first and self.first_wait is not None:
            timeout = self.first_wait
        super().wait(subscription_id, seen, timeout)
        self.woken.append(self.seen(subscription_id) != seen)
        if first and self.gate is not None and self.first_wait is not None:
            assert self.gate.wait(WAIT), "the gate never opened"


@pytest.fixture
def new_work(monkeypatch) -> RecordingNewWork:
    recording = RecordingNewWork()
    monkeypatch.setattr(drain, "new_work", recording)
    return recording


@pytest.fixture
def one_slot(monkeypatch) -> threading.BoundedSemaphore:
    slot = threading.BoundedSemaphore(1)
    monkeypatch.setattr(drain, "_waiting", slot)
    return slot


def subscription_updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "subscriptions_subscription"')]


# NewWork ------------------------------------------------------------------------------------


class ObservedCondition(threading.Condition):
    """Counts the threads that entered wait(); announce() can only run once they are in it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)

    def wait(self, timeout=None):
        self.entered.release()
        return super().wait(timeout)


def start_waiter(work: drain.NewWork, subscription_id: int) -> threading.Thread:
    seen = work.seen(subscription_id)
    thread = threading.Thread(target=work.wait, args=(subscription_id, seen, 60), daemon=True)
    thread.start()
    return thread


def test_a_waiter_wakes_for_its_own_subscription_only():
    work = drain.NewWork()
    work.condition = ObservedCondition()
    first, second = start_waiter(work, 1), start_waiter(work, 2)
    # Both are inside wait() (announce needs the lock wait() gives up), so the
    # announcement's notify_all reaches both of them.
    assert work.condition.entered.acquire(timeout=WAIT)
    assert work.condition.entered.acquire(timeout=WAIT)
    work.announce([1, 3])
    first.join(WAIT)
    assert not first.is_alive()
    second.join(0.2)
    assert second.is_alive(), "woken by another subscription's announcement"
    work.announce([2])
    second.join(WAIT)
    assert not second.is_alive()
    assert (work.seen(1), work.seen(2), work.seen(3), work.seen(4)) == (1, 1, 1, 0)


def test_an_announcement_between_seen_and_wait_is_not_lost():
    work = drain.NewWork()
    seen = work.seen(7)
    work.announce([7])
    waiter = threading.Thread(target=work.wait, args=(7, seen, 60), daemon=True)
    waiter.start()
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert work.seen(7) == seen + 1


def test_a_wait_without_announcement_ends_at_its_timeout():
    work = drain.NewWork()
    work.announce([2])
    waiter = threading.Thread(target=work.wait, args=(1, 0, 0.05), daemon=True)
    waiter.start()
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert work.seen(1) == 0


# Draining and waiting -----------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(HUB_DRAIN_IDLE_SECONDS=0.3)
def test_an_idle_drain_waits_out_its_window_and_sends_nothing(receiver, new_work, one_slot):
    sub = SubscriptionFactory(url=receiver.url)
    started = time.monotonic()
    assert drain.drain_subscription(sub.pk) == 0
    elapsed = time.monotonic() - started
    assert elapsed >= 0.3  # it kept the subscription for the idle window
    assert elapsed < WAIT  # sanity only
    assert new_work.waiting.is_set()
    assert receiver.requests == []
    sub.refresh_from_db()
    assert sub.lease_until is None
    # The waiting slot was given back.
    assert one_slot.acquire(blocking=False)


@pytest.mark.django_db
@override_settings(HUB_DRAIN_IDLE_SECONDS=0)
def test_without_an_idle_window_a_drain_never_waits(receiver, new_work, one_slot):
    sub = SubscriptionFactory(url=receiver.url)
    assert drain.drain_subscription(sub.pk) == 0
    assert not new_work.waiting.is_set()
    assert one_slot.acquire(blocking=False)


def fan_out_when_waiting(new_work: RecordingNewWork, sub_id: int, event_id: int, **options):
    """Run in a thread: once the drain waits, look at its lease and fan an event out.

    The in-memory SQLite test database answers "table is locked" rather than waiting when two
    connections collide, so this thread touches the database only while the drain waits for
    `gate` (see RecordingNewWork). With `keep_waking`, it then wakes the drain (without the
    database) until it is told to stop.
    """
    gate: threading.Event | None = options.get("gate")
    keep_waking: threading.Event | None = options.get("keep_waking")
    receiver: TestReceiver | None = options.get("receiver")
    report: dict = {"errors": []}

    def run():
        try:
            if not new_work.waiting.wait(WAIT):
                raise AssertionError("the drain never waited")
            report["lease_held"] = Subscription.objects.get(pk=sub_id).lease_until is not None
            # Another drain of the same subscription is refused meanwhile.
            report["other_drain"] = drain.drain_subscription(sub_id)
            report["made"] = fanout.fan_out([event_id])
        except BaseException as exc:
            report["errors"].append(exc)
        finally:
            connection.close()
            if gate is not None:
                gate.set()
        try:
            if keep_waking is not None:
                receiver.wait_for(1, timeout=WAIT)
                # The drain ends once its idle window has passed, the next time it wakes.
                while not keep_waking.wait(0.05):
                    drain.new_work.announce([sub_id])
        except BaseException as exc:
            report["errors"].append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, report


@pytest.mark.django_db(transaction=True)
@override_settings(HUB_DRAIN_IDLE_SECONDS=0.5)
def test_a_waiting_drain_sends_work_that_fan_out_announces(receiver, monkeypatch):
    # The first wait lasts up to WAIT: only fan_out's announcement can end it in time.
    gate = threading.Event()
    new_work = RecordingNewWork(first_wait=WAIT, gate=gate)
    monkeypatch.setattr(drain, "new_work", new_work)
    sub = SubscriptionFactory(url=receiver.url)
    event = EventFactory()
    drained = threading.Event()
    thread, report = fan_out_when_waiting(
        new_work, sub.pk, event.pk, gate=gate, keep_waking=drained, receiver=receiver
    )
    try:
        sent = drain.drain_subscription(sub.pk)
    finally:
        gate.set()
        drained.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert report["errors"] == []
    # While waiting, the drain kept the subscription: a second drain was refused.
    assert (report["lease_held"], report["other_drain"], report["made"]) == (True, 0, 1)
    assert new_work.woken[0] is True
    assert sent == 1
    (got,) = receiver.requests
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert got.headers["webhook-id"] == delivery.webhook_id
    assert Subscription.objects.get(pk=sub.pk).lease_until is None


@pytest.mark.django_db(transaction=True)
@override_settings(HUB_DRAIN_IDLE_SECONDS=0.5)
def test_a_waiting_drain_finds_unannounced_work_by_polling(receiver, monkeypatch):
    # Work fanned out by another process is not announced here: the drain's polling finds it.
    monkeypatch.setattr(fanout, "wake", lambda subscription_ids: None)
    gate = threading.Event()
    new_work = RecordingNewWork(gate=gate)
    monkeypatch.setattr(drain, "new_work", new_work)
    sub = SubscriptionFactory(url=receiver.url)
    event = EventFactory()
    thread, report = fan_out_when_waiting(new_work, sub.pk, event.pk, gate=gate)
    try:
        sent = drain.drain_subscription(sub.pk)
    finally:
        gate.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert report["errors"] == []
    assert (report["lease_held"], report["other_drain"], report["made"]) == (True, 0, 1)
    assert new_work.seen(sub.pk) == 0
    assert new_work.woken[0] is False
    assert sent == 1
    assert len(receiver.requests) == 1
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED


@pytest.mark.django_db
@override_settings(HUB_DRAIN_IDLE_SECONDS=5.0)
def test_without_a_free_waiting_slot_a_drain_ends_at_once(receiver, new_work, one_slot):
    assert one_slot.acquire(blocking=False)  # another drain is waiting
    sub = SubscriptionFactory(url=receiver.url)
    fanout.fan_out([EventFactory().pk])
    assert drain.drain_subscription(sub.pk) == 1
    assert len(receiver.requests) == 1
    assert not new_work.waiting.is_set()
    # The slot it could not take is still the other drain's.
    assert not one_slot.acquire(blocking=False)
    assert drain.drain_subscription(sub.pk) == 0
    assert not new_work.waiting.is_set()
    sub.refresh_from_db()
    assert sub.lease_until is None


# Claiming -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("change", [{"is_paused": True}, {"is_active": False}])
def test_claim_due_skips_paused_and_disabled_subscriptions(change):
    sub = SubscriptionFactory()
    fanout.fan_out([EventFactory().pk, EventFactory().pk])
    # A drain that loaded the subscription before it was paused or disabled.
    Subscription.objects.filter(pk=sub.pk).update(**change)
    assert drain.claim_due(sub, timezone.now()) == []
    assert set(Delivery.objects.values_list("status", "claimed_until")) == {
        (DeliveryStatus.PENDING, None)
    }
    Subscription.objects.filter(pk=sub.pk).update(is_paused=False, is_active=True)
    claimed = drain.claim_due(sub, timezone.now())
    assert len(claimed) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENDING}


@pytest.mark.django_db
def test_claim_due_renews_the_subscription_lease_only_when_shorter():
    sub = SubscriptionFactory(timeout_seconds=5)
    fanout.fan_out([EventFactory().pk])
    now = timezone.now()
    claimed_sub = drain.claim_subscription(sub.pk, now)
    assert claimed_sub is not None
    long_lease = claimed_sub.lease_until
    with CaptureQueriesContext(connection) as queries:
        (delivery,) = drain.claim_due(claimed_sub, now)
    assert subscription_updates(queries.captured_queries) == []
    # The subscription's own timeout, not the longest allowed one (issue 11, item 14).
    assert delivery.claimed_until == drain.lease_for(claimed_sub, now) == long_lease
    assert Subscription.objects.get(pk=sub.pk).lease_until == long_lease

    # A subscription lease shorter than the claims' is extended to cover them.
    fanout.fan_out([EventFactory().pk])
    now = timezone.now()
    short = now + timedelta(seconds=1)
    Subscription.objects.filter(pk=sub.pk).update(lease_until=short)
    claimed_sub.lease_until = short
    with CaptureQueriesContext(connection) as queries:
        (delivery,) = drain.claim_due(claimed_sub, now)
    assert len(subscription_updates(queries.captured_queries)) == 1
    assert Subscription.objects.get(pk=sub.pk).lease_until == delivery.claimed_until
    assert claimed_sub.lease_until == delivery.claimed_until


# Health -------------------------------------------------------------------------------------


def succeeded_batch(sub: Subscription) -> tuple[list[Delivery], list[Attempt]]:
    fanout.fan_out([EventFactory().pk])
    delivery = Delivery.objects.get(subscription=sub, status=DeliveryStatus.PENDING)
    attempt = outcomes.apply_result(delivery, sender.Result(200, 3, "ok", ""), timezone.now())
    return [delivery], [attempt]


@pytest.mark.django_db
def test_record_does_not_rewrite_a_recently_healthy_subscription():
    last_success = timezone.now()
    sub = SubscriptionFactory(last_success_at=last_success)
    done, attempts = succeeded_batch(sub)
    with CaptureQueriesContext(connection) as queries:
        outcomes.record(sub, done, attempts)
    assert subscription_updates(queries.captured_queries) == []
    # The batch itself was recorded.
    assert Delivery.objects.get().status == DeliveryStatus.SUCCEEDED
    assert Attempt.objects.get().status_code == 200
    assert Subscription.objects.get(pk=sub.pk).last_success_at == last_success


@pytest.mark.django_db
@pytest.mark.parametrize(
    "health",
    [
        {"consecutive_failures": 3, "failing_since": -60},
        {"consecutive_failures": 0, "failing_since": -60},
        {"consecutive_failures": 0, "last_success_at": -60},
        {"consecutive_failures": 0, "last_success_at": None},
    ],
    ids=["failures", "failing-since", "old-success", "no-success"],
)
def test_record_rewrites_health_that_is_not_recent_or_not_healthy(health):
    now = timezone.now()
    fields = {"last_success_at": now}
    for name, seconds in health.items():
        is_time = name != "consecutive_failures" and seconds is not None
        fields[name] = now + timedelta(seconds=seconds) if is_time else seconds
    sub = SubscriptionFactory(**fields)
    done, attempts = succeeded_batch(sub)
    with CaptureQueriesContext(connection) as queries:
        outcomes.record(sub, done, attempts)
    assert len(subscription_updates(queries.captured_queries)) == 1
    stored = Subscription.objects.get(pk=sub.pk)
    assert (stored.consecutive_failures, stored.failing_since) == (0, None)
    assert stored.last_success_at is not None and stored.last_success_at >= now
    assert sub.last_success_at == stored.last_success_at


@pytest.mark.django_db
def test_record_counts_failures_even_on_a_recently_healthy_subscription():
    sub = SubscriptionFactory(last_success_at=timezone.now())
    fanout.fan_out([EventFactory().pk])
    delivery = Delivery.objects.get()
    attempt = outcomes.apply_result(delivery, sender.Result(500, 3, "", ""), timezone.now())
    with CaptureQueriesContext(connection) as queries:
        outcomes.record(sub, [delivery], [attempt])
    assert len(subscription_updates(queries.captured_queries)) == 1
    stored = Subscription.objects.get(pk=sub.pk)
    assert stored.consecutive_failures == 1
    assert stored.failing_since is not None


def test_still_healthy():
    now = timezone.now()
    recent = Subscription(last_success_at=now - timedelta(milliseconds=200))
    assert outcomes.still_healthy(recent, now)
    stale = timedelta(seconds=outcomes.HEALTH_WRITE_SECONDS)
    assert not outcomes.still_healthy(Subscription(last_success_at=now - stale), now)
    assert not outcomes.still_healthy(Subscription(last_success_at=None), now)
    failing = Subscription(last_success_at=now, consecutive_failures=1)
    assert not outcomes.still_healthy(failing, now)
    assert not outcomes.still_healthy(Subscription(last_success_at=now, failing_since=now), now)


# Task options -------------------------------------------------------------------------------


def test_only_the_replay_task_acknowledges_late():
    assert settings.CELERY_TASK_ACKS_LATE is False
    assert celery_app.conf.task_acks_late is False
    assert tasks.replay_deliveries_task.acks_late is True
    assert tasks.replay_deliveries_task.reject_on_worker_lost is True
    for task in (tasks.drain_subscription_task, tasks.fan_out_pending, tasks.sweep):
        assert task.acks_late is False, task.name
        assert not task.reject_on_worker_lost, task.name
