"""Nothing acknowledged is lost: real gunicorn, real Celery worker, real Redis and PostgreSQL.

Each test starts its own redis-server so it may kill and restart it, a gunicorn serving the
hub, and a Celery worker with beat (sweep every second), all on the pytest-django test
database. The subscriber is a real HTTP server in this process.
"""

import json
import uuid

import httpx
import pytest

from receivers.models import Event
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import gridx_body
from subscriptions.models import Delivery, DeliveryStatus
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver

from .processes import HubProcesses, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def send(hub: HubProcesses, source, body: bytes) -> httpx.Response:
    return hub.post_gridx(source.slug, body, source.secrets.first().value)


def all_delivered(count: int):
    return lambda: Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() >= count


def test_worker_killed_mid_delivery_completes_later(hub):
    with TestReceiver() as receiver:
        # The first request hangs: the worker is killed while it waits for the answer.
        receiver.answers = [Answer(delay=30)]
        source, _ = make_source("gridx")
        SubscriptionFactory(url=receiver.url, timeout_seconds=20)
        hub.start_web()
        hub.start_worker()
        assert send(hub, source, gridx_body(id=str(uuid.uuid4()))).status_code == 200
        receiver.wait_for(1, timeout=30)
        assert Delivery.objects.get().status == DeliveryStatus.SENDING
        hub.kill_worker()

        hub.start_worker()
        wait_until(all_delivered(1), 60, "the delivery to complete after the restart")
        requests = receiver.wait_for(2)
        # At least once: the subscriber saw it twice and can dedupe on webhook-id.
        assert len({r.headers["webhook-id"] for r in requests}) == 1
        delivery = Delivery.objects.get()
        assert [a.status_code for a in delivery.attempts.all()][-1] == 200


def test_redis_down_while_events_arrive_then_everything_is_delivered(hub, redis):
    with TestReceiver() as receiver:
        source, _ = make_source("gridx")
        SubscriptionFactory(url=receiver.url)
        hub.start_web()
        hub.start_worker()
        assert send(hub, source, gridx_body(id=str(uuid.uuid4()))).status_code == 200
        wait_until(all_delivered(1), 30, "the first delivery")

        redis.stop()
        answers = [send(hub, source, gridx_body(id=str(uuid.uuid4()))) for _ in range(20)]
        assert [a.status_code for a in answers] == [200] * 20
        assert Event.objects.count() == 21

        redis.start()  # same port: workers, beat and the web processes reconnect by themselves
        wait_until(all_delivered(21), 90, "every event to be delivered after Redis returned")
        assert len({r.headers["webhook-id"] for r in receiver.requests}) == 21


def test_events_whose_message_was_lost_are_found_by_the_sweep(hub):
    with TestReceiver() as receiver:
        SubscriptionFactory(url=receiver.url)
        # Stored but never announced on the broker, as if the message had been lost.
        events = [EventFactory() for _ in range(5)]
        hub.start_worker()
        wait_until(all_delivered(5), 60, "the sweep to deliver the unannounced events")
        delivered = {json.loads(r.body)["id"] for r in receiver.wait_for(5)}
        assert delivered == {e.external_id for e in events}
