"""Leases and connections of the worker: a subscription is held for its own timeout plus the
margin, renewed while it is drained and given back even after a database error; the sweep
runs one at a time and without beat; a connection that failed is dropped around each task; a
lost broker is tried again every few seconds.

In-process; the same with real processes: test_worker_faults.py.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from types import SimpleNamespace

import psycopg
import pytest
from celery.worker.consumer import Consumer as CeleryConsumer
from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu import Connection

from hub import celery as hub_celery
from hub.consumer import Consumer
from receivers.models import Event, EventStatus
from receivers.tests.factories import EventFactory
from subscriptions.models import Subscription
from subscriptions.services import drain, sweep
from subscriptions.tests.factories import SubscriptionFactory

from .processes import free_port


def updates_of_subscriptions(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "subscriptions_subscription"')]


@pytest.mark.django_db
@override_settings(HUB_LEASE_MARGIN_SECONDS=30)
@pytest.mark.parametrize("timeout", [5, 60])
def test_a_subscription_is_leased_for_its_own_timeout_and_the_margin(timeout):
    sub = SubscriptionFactory(timeout_seconds=timeout)
    now = timezone.now()
    claimed = drain.claim_subscription(sub.pk, now)
    assert claimed is not None
    assert claimed.lease_until == now + timedelta(seconds=timeout + 30)
    assert Subscription.objects.get(pk=sub.pk).lease_until == claimed.lease_until
    # Held: another drainer is refused until the lease ends.
    assert drain.claim_subscription(sub.pk, now + timedelta(seconds=timeout + 29)) is None
    assert drain.claim_subscription(sub.pk, now + timedelta(seconds=timeout + 31)) is not None


@pytest.mark.django_db
@override_settings(HUB_LEASE_MARGIN_SECONDS=30)
def test_a_drainer_renews_its_lease_once_half_the_margin_is_used():
    sub = SubscriptionFactory(timeout_seconds=5)
    now = timezone.now()
    claimed = drain.claim_subscription(sub.pk, now)
    with CaptureQueriesContext(connection) as queries:
        drain.renew_lease(claimed, now + timedelta(seconds=14))
    assert updates_of_subscriptions(queries.captured_queries) == []
    later = now + timedelta(seconds=16)
    with CaptureQueriesContext(connection) as queries:
        drain.renew_lease(claimed, later)
    assert len(updates_of_subscriptions(queries.captured_queries)) == 1
    assert Subscription.objects.get(pk=sub.pk).lease_until == later + timedelta(seconds=35)


@pytest.mark.django_db
def test_a_release_gives_back_only_the_lease_this_drainer_holds():
    sub = SubscriptionFactory()
    claimed = drain.claim_subscription(sub.pk, timezone.now())
    # Its lease ended and another drainer took the subscription meanwhile.
    other = timezone.now() + timedelta(seconds=60)
    Subscription.objects.filter(pk=sub.pk).update(lease_until=other)
    drain.release_subscription(claimed)
    assert Subscription.objects.get(pk=sub.pk).lease_until == other


@pytest.mark.django_db
def test_a_failed_release_is_retried(monkeypatch):
    sub = SubscriptionFactory()
    claimed = drain.claim_subscription(sub.pk, timezone.now())
    monkeypatch.setattr(drain, "RELEASE_RETRY_SECONDS", 0)
    real_update = QuerySet.update
    failures = [DatabaseError("the connection is closed")]

    def update_failing_once(queryset, **values):
        if failures:
            raise failures.pop()
        return real_update(queryset, **values)

    monkeypatch.setattr(QuerySet, "update", update_failing_once)
    drain.release_subscription(claimed)
    assert failures == []
    assert Subscription.objects.get(pk=sub.pk).lease_until is None


@pytest.mark.django_db
def test_a_release_is_retried_until_the_lease_has_ended_by_itself(monkeypatch, caplog):
    sub = SubscriptionFactory()
    claimed = drain.claim_subscription(sub.pk, timezone.now())
    lease = timezone.now() + timedelta(seconds=0.3)
    Subscription.objects.filter(pk=sub.pk).update(lease_until=lease)
    claimed.lease_until = lease
    monkeypatch.setattr(drain, "RELEASE_RETRY_SECONDS", 0.02)
    monkeypatch.setattr(drain, "RELEASE_RETRY_MOST_SECONDS", 0.05)
    tries = []

    def update_failing(queryset, **values):
        tries.append(timezone.now())
        raise DatabaseError("the connection is closed")

    monkeypatch.setattr(QuerySet, "update", update_failing)
    with caplog.at_level(logging.WARNING, logger="subscriptions.services.drain"):
        drain.release_subscription(claimed)
    assert len(tries) > 2
    assert tries[-1] + timedelta(seconds=0.05) >= lease
    assert "its lease ends by itself" in caplog.text


# The sweep: one at a time, and in every worker --------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_only_one_sweep_runs_at_a_time_across_processes():
    settings_dict = connection.settings_dict
    other = psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"],
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    )
    try:
        # Another process is sweeping: this one skips its turn.
        other.execute("SELECT pg_advisory_lock(%s)", [sweep.SWEEP_LOCK_KEY])
        assert sweep.sweep_unless_running() is None
        other.execute("SELECT pg_advisory_unlock(%s)", [sweep.SWEEP_LOCK_KEY])
        assert sweep.sweep_unless_running() is not None
        # The lock was given back: the other process may take it.
        assert other.execute(
            "SELECT pg_try_advisory_lock(%s)", [sweep.SWEEP_LOCK_KEY]
        ).fetchone() == (True,)
    finally:
        other.close()


@pytest.mark.django_db
def test_a_sweep_is_skipped_while_another_thread_of_the_process_sweeps():
    # The sweeper thread and beat's sweep task may meet in one worker process.
    skipped = {}

    def sweep_in_another_thread():
        try:
            skipped["result"] = sweep.sweep_unless_running()
        finally:
            connection.close()

    with sweep.sweep_lock() as acquired:
        assert acquired is True
        other = threading.Thread(target=sweep_in_another_thread)
        other.start()
        other.join(10)
    assert skipped == {"result": None}
    assert sweep.sweep_unless_running() is not None


@pytest.mark.django_db
def test_a_workers_sweeper_sweeps_at_once_and_survives_a_failure(monkeypatch, caplog):
    SubscriptionFactory()
    EventFactory(received_at=timezone.now() - timedelta(minutes=1))
    runs = []
    real_sweep = sweep.sweep

    def failing_once(now=None):
        runs.append(now)
        if len(runs) == 1:
            raise DatabaseError("server closed the connection unexpectedly")
        return real_sweep(now)

    monkeypatch.setattr(sweep, "sweep", failing_once)

    class StopAfterTwo:
        def wait(self, seconds):
            return len(runs) >= 2

    with caplog.at_level(logging.WARNING, logger="subscriptions.services.sweep"):
        sweep.sweep_forever(StopAfterTwo())
    assert "sweep failed: DatabaseError" in caplog.text
    assert len(runs) == 2
    # The second turn found the event whose fan-out request was lost.
    assert Event.objects.get().status == EventStatus.DISPATCHED


# Connections around tasks -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_that_failed_outside_a_transaction_is_dropped_around_each_task(
    monkeypatch,
):
    connection.ensure_connection()
    # As after a query that failed on a terminated session, outside transaction.atomic.
    connection.errors_occurred = True
    monkeypatch.setattr(connection, "is_usable", lambda: False)
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    hub_celery.drop_broken_connections(sender=eager)
    assert connection.connection is not None  # an inline task leaves its caller's alone
    on_a_worker = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    hub_celery.drop_broken_connections(sender=on_a_worker)
    assert connection.connection is None
    monkeypatch.undo()
    assert Subscription.objects.count() == 0  # the next query opens a new connection


class Enough(Exception):
    pass


def test_a_worker_tries_a_lost_broker_again_at_least_every_five_seconds(monkeypatch):
    assert hub_celery.app.conf.worker_consumer == "hub.consumer:Consumer"
    assert hub_celery.app.conf.broker_connection_max_retries is None  # for as long as it takes
    # Celery's part of ensure_connected (logging, its retry settings) is not under test here.
    monkeypatch.setattr(CeleryConsumer, "ensure_connected", lambda self, conn: conn)
    monkeypatch.setattr("kombu.utils.functional.sleep", lambda seconds: None)
    broker = Connection(f"redis://127.0.0.1:{free_port()}/0")
    Consumer.ensure_connected(object.__new__(Consumer), broker)
    waits = []

    def note_wait(exc, interval):
        waits.append(interval)
        if len(waits) == 8:
            raise Enough

    with pytest.raises(Enough):
        broker.ensure_connection(note_wait, None)
    assert waits == [1, 2, 3, 4, 5, 5, 5, 5]
