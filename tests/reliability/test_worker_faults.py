"""Workers under faults, with real processes: a worker's database sessions terminated, a
drainer killed, and no beat at all.

Each test starts a private redis-server, gunicorn where it sends events through the web
server, and Celery workers, all on the pytest-django test database (sweep every second, lease
margin 2 s). Terminating sessions touches only the worker's own: they carry an application
name of their own (PGAPPNAME).
"""

import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from hub import health
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import gridx_body
from subscriptions.models import Delivery, DeliveryStatus, Subscription
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from subscriptions.tests.receiver import Answer, Received, TestReceiver

from .processes import HubProcesses, database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKER_APP = "hub-test-worker"


def send(hub: HubProcesses, slug: str, secret: str) -> str:
    """One signed gridX event through the web server; returns its id."""
    event_id = str(uuid.uuid4())
    body = gridx_body(id=event_id)
    answer = hub.post_gridx(slug, body, secret)
    assert answer.status_code == 200, answer.text
    return event_id


def wait_until(condition, timeout: float, what: str) -> float:
    """Seconds it took; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def succeeded(count: int):
    return lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() >= count


def terminate_sessions(application_name: str) -> int:
    """pg_terminate_backend for every session of the test database with that name."""
    with psycopg.connect(database_url(), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [application_name],
        ).fetchall()
    return len(rows)


def task_failures(hub: HubProcesses, name: str = "worker") -> list[str]:
    """Celery's line for a task that raised."""
    log = (hub.logs / f"{name}.log").read_text()
    return [line for line in log.splitlines() if "raised unexpected" in line]


def lease_released(sub: Subscription):
    return lambda: Subscription.objects.get(pk=sub.pk).lease_until is None


# 13: a thread whose connection PostgreSQL dropped opens a new one ----------------------------


def test_the_next_task_succeeds_after_the_workers_sessions_are_terminated(hub):
    with TestReceiver() as receiver:
        source, (secret,) = make_source("gridx")
        sub = SubscriptionFactory(url=receiver.url)
        hub.start_web()
        # One thread: every task runs on the connection that is terminated below.
        hub.start_worker(beat=False, concurrency=1, env={"PGAPPNAME": WORKER_APP})
        send(hub, source.slug, secret)
        wait_until(succeeded(1), 30, "the first delivery")
        wait_until(lease_released(sub), 10, "the drain to end")

        assert terminate_sessions(WORKER_APP) >= 1
        send(hub, source.slug, secret)
        wait_until(succeeded(2), 20, "a delivery on the thread whose session was terminated")
        assert task_failures(hub) == []


def test_a_drain_writes_its_batch_when_its_session_dies_while_it_sends(hub):
    terminated: list[int] = []

    def terminate_first(request: Received) -> None:
        if not terminated:
            terminated.append(terminate_sessions(WORKER_APP))

    with TestReceiver() as receiver:
        # The session dies while the drain waits for this answer.
        receiver.answers = [Answer(delay=1)]
        receiver.on_request = terminate_first
        source, (secret,) = make_source("gridx")
        SubscriptionFactory(url=receiver.url)
        hub.start_web()
        hub.start_worker(beat=False, concurrency=1, env={"PGAPPNAME": WORKER_APP})
        send(hub, source.slug, secret)
        wait_until(succeeded(1), 20, "the delivery to be recorded")
        assert terminated and terminated[0] >= 1
        delivery = Delivery.objects.get()
        assert delivery.attempt_count == 1
        # Recorded, so never handed out again: the subscriber saw it once.
        time.sleep(1)
        assert [r.headers["webhook-id"] for r in receiver.requests] == [delivery.webhook_id]
        assert task_failures(hub) == []


# 14: a killed drainer blocks its subscription for its own timeout plus the margin ------------

# Long enough for the successor to start while the first request still hangs.
TIMEOUT = 12
# A production-like margin: larger than the few seconds a drainer renews ahead of a request.
LEASE_MARGIN = {"HUB_LEASE_MARGIN_SECONDS": "8"}
# After the leases end: one sweep period to find them, and a drain to start and send.
ALLOWANCE = 3


def test_after_a_drainer_is_killed_delivery_resumes_within_its_timeout_and_margin(hub, logs):
    with TestReceiver() as receiver:
        # The first request hangs: its drainer is killed while it waits for the answer.
        receiver.answers = [Answer(delay=30)]
        source, (secret,) = make_source("gridx")
        SubscriptionFactory(url=receiver.url, timeout_seconds=TIMEOUT)
        hub.start_web()
        drainer = hub.start_worker(beat=False, name="drainer", env=LEASE_MARGIN)
        send(hub, source.slug, secret)
        receiver.wait_for(1, timeout=30)
        # The worker that takes over is up before the kill: only the leases are measured.
        hub.start_worker(name="successor", env=LEASE_MARGIN)
        hub.wait_ready("successor")
        assert Delivery.objects.get().status == DeliveryStatus.SENDING, "no longer hanging"

        hub.kill(drainer)
        killed = time.monotonic()
        send(hub, source.slug, secret)
        wait_until(succeeded(2), 120, "both deliveries after the kill")
        resumed = time.monotonic() - killed
        print(f"delivery resumed {resumed:.1f}s after the kill")
        assert resumed < TIMEOUT + int(LEASE_MARGIN["HUB_LEASE_MARGIN_SECONDS"]) + ALLOWANCE
        assert len(receiver.requests) == 3  # the hung one was sent again: at least once


# 15: recovery goes on without beat ------------------------------------------------------------


def test_without_beat_retries_run_claims_are_reclaimed_and_lost_requests_are_redone(hub):
    with TestReceiver() as receiver:
        sub = SubscriptionFactory(url=receiver.url)
        now = timezone.now()
        # A retry that falls due once the worker runs.
        retry = DeliveryFactory(
            subscription=sub,
            status=DeliveryStatus.RETRYING,
            next_attempt_at=now + timedelta(seconds=3),
        )
        # Left `sending` by a worker that crashed: its claim and the lease have ended.
        crashed = DeliveryFactory(
            subscription=sub,
            status=DeliveryStatus.SENDING,
            claimed_until=now - timedelta(seconds=1),
            attempts=(),
        )
        Subscription.objects.filter(pk=sub.pk).update(lease_until=now - timedelta(seconds=1))
        # Due, but its drain request was lost; and an event whose fan-out request was lost.
        lost_drain = DeliveryFactory(subscription=sub, status=DeliveryStatus.PENDING, attempts=())
        lost_fan_out = EventFactory(received_at=now - timedelta(minutes=1))

        hub.start_worker(beat=False)
        wait_until(succeeded(4), 30, "every delivery, with no beat running")
        delivered = {r.headers["webhook-id"] for r in receiver.requests}
        made = Delivery.objects.get(event=lost_fan_out)
        assert delivered == {d.webhook_id for d in (retry, crashed, lost_drain, made)}
        retry.refresh_from_db()
        assert retry.attempt_count == 2
        # What /readyz reads for beat still says that no beat sent a sweep.
        assert health.check_beat() == "no sweep sent by beat yet"
