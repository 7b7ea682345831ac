"""The energy options with real processes: gunicorn receives signed gridX events, Celery
workers fan out and deliver through a private Redis, on the PostgreSQL test database, to a real
HTTP subscriber in this process (docs/energy.md).

- order per key: interleaved devices, a subscriber that fails for one of them;
- coalescing: the subscriber is down while 100 state events for 5 devices arrive;
- expiry: stale and failing deliveries end as expired, on time;
- priority: drains go to the queue of their priority, and only workers of that queue send them.
"""

import json
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from receivers.tests.factories import make_source
from subscriptions.models import Delivery, DeliveryStatus, Priority
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver

from .processes import HubProcesses, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def reading(device: str, n: int, event_type: str = "ev/measurement", **fields) -> bytes:
    """A gridX event of one device, `n` its place in the sequence the platform sent."""
    event = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "time": timezone.now().isoformat(),
        "specVersion": "1.0",
        "source": "/systems/s-1",
        "data": {"applianceID": device, "n": n},
        **fields,
    }
    return json.dumps(event).encode()


def send(hub: HubProcesses, source, secret: str, body: bytes) -> None:
    assert hub.post_gridx(source.slug, body, secret).status_code == 200


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def count(status: str) -> int:
    return Delivery.objects.filter(status=status).count()


def data_of(request) -> dict:
    return json.loads(request.body)["data"]


def sequence_of(receiver: TestReceiver, device: str) -> list[int]:
    return [data_of(r)["n"] for r in receiver.requests if data_of(r)["applianceID"] == device]


def test_a_failing_device_holds_back_only_its_own_events(hub):
    failing = True

    def answer(request):
        return Answer(500) if failing and data_of(request)["applianceID"] == "b" else Answer()

    with TestReceiver() as receiver:
        receiver.script = answer
        source, (secret,) = make_source("gridx")
        SubscriptionFactory(url=receiver.url, ordering_key="data.applianceID")
        hub.start_web()
        hub.start_worker()
        for n in range(1, 6):
            for device in "abc":
                send(hub, source, secret, reading(device, n))
        wait_until(lambda: count(DeliveryStatus.SUCCEEDED) == 10, 60, "a and c to be delivered")
        # b-1 is retried 5 s after its first attempt; b-2..b-5 wait for it meanwhile.
        wait_until(lambda: len(sequence_of(receiver, "b")) >= 2, 30, "b-1's retry")
        # The subscriber answered before the drain wrote it down and gave b-2..b-5 back.
        wait_until(
            lambda: count(DeliveryStatus.SENDING) == 0 and count(DeliveryStatus.RETRYING) == 1,
            10,
            "the retry's outcome to be recorded",
        )
        assert sequence_of(receiver, "a") == sequence_of(receiver, "c") == [1, 2, 3, 4, 5]
        assert set(sequence_of(receiver, "b")) == {1}
        assert count(DeliveryStatus.PENDING) == 4

        failing = False
        # b-1's next try would be in 5 minutes: bring it forward, as time would.
        Delivery.objects.filter(status=DeliveryStatus.RETRYING).update(
            next_attempt_at=timezone.now()
        )
        wait_until(lambda: count(DeliveryStatus.SUCCEEDED) == 15, 60, "b to go on")
        assert sequence_of(receiver, "b")[-5:] == [1, 2, 3, 4, 5]
        assert sequence_of(receiver, "a") == sequence_of(receiver, "c") == [1, 2, 3, 4, 5]


def test_after_an_outage_only_the_newest_state_per_device_is_sent(hub):
    port = free_port()
    source, (secret,) = make_source("gridx")
    SubscriptionFactory(
        url=f"http://127.0.0.1:{port}/hook",
        coalesce=[{"types": ["ev/measurement"], "key": "data.applianceID"}],
    )
    hub.start_web()
    hub.start_worker()
    # Nothing listens on the port: the subscriber is down while the events arrive.
    for n in range(100):
        send(hub, source, secret, reading(f"device-{n % 5}", n))
    wait_until(lambda: Delivery.objects.count() == 100, 30, "the fan-out of every event")

    with TestReceiver(port=port) as receiver:
        wait_until(lambda: count(DeliveryStatus.SUCCEEDED) == 5, 60, "the newest states")
        time.sleep(2)  # a few more sweeps and drains: nothing else is sent
        newest = {data_of(r)["applianceID"]: data_of(r)["n"] for r in receiver.requests}
        assert len(receiver.requests) == 5
        assert newest == {f"device-{d}": 95 + d for d in range(5)}
    assert count(DeliveryStatus.SUPERSEDED) == 95


def test_stale_and_failing_deliveries_expire_on_time(hub):
    # The retry is asked for a minute later: a-2 expires first, however slow its first attempt.
    with TestReceiver(default=Answer(503, headers={"retry-after": "60"})) as receiver:
        source, (secret,) = make_source("gridx")
        SubscriptionFactory(url=receiver.url, expire_after=8)
        hub.start_web()
        hub.start_worker()
        an_hour_ago = timezone.now().replace(microsecond=0) - timedelta(hours=1)
        send(hub, source, secret, reading("a", 1, time=an_hour_ago.isoformat()))
        send(hub, source, secret, reading("a", 2))
        # a-2 fails at once and would be retried a minute later; it expires after 8 s instead.
        wait_until(lambda: count(DeliveryStatus.EXPIRED) == 2, 30, "both to expire")
        time.sleep(3)
        assert [data_of(r)["n"] for r in receiver.requests] == [2]


def test_drains_are_sent_only_by_workers_of_their_priority(hub):
    with TestReceiver() as receiver:
        source, (secret,) = make_source("gridx")
        high = SubscriptionFactory(url=receiver.url + "/high", priority=Priority.HIGH)
        low = SubscriptionFactory(url=receiver.url + "/low", priority=Priority.LOW)
        normal = SubscriptionFactory(url=receiver.url + "/normal")
        hub.start_web()
        hub.start_worker(queues="celery", name="normal")
        hub.start_worker(beat=False, queues="high", name="high")
        send(hub, source, secret, reading("a", 1))

        def delivered(sub) -> bool:
            return Delivery.objects.filter(subscription=sub, status="succeeded").exists()

        wait_until(lambda: delivered(high) and delivered(normal), 30, "high and normal")
        time.sleep(2)  # sweeps ask for the low drain again: nobody takes the low queue
        assert not delivered(low)
        hub.start_worker(beat=False, queues="low", name="low")
        wait_until(lambda: delivered(low), 30, "low, once a worker takes its queue")
        assert sorted(r.path for r in receiver.requests) == [
            "/hook/high",
            "/hook/low",
            "/hook/normal",
        ]
