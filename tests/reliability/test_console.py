"""The operator's console with real processes: a flood of refused requests against gunicorn's
processes stores no more than the cap; a failing subscription's alert reaches a subscriber,
the mail and Slack; a source falls silent and recovers on beat's sweep; a backfill through
the API is sent in received order by a real worker."""

import json
import threading
import uuid
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db.models import Max, Sum
from django.utils import timezone
from knox.models import AuthToken
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from receivers.models import Event, Refusal, RefusalMinute
from receivers.providers import get_provider
from receivers.tests.factories import make_source
from receivers.tests.webhooks import gridx_body
from subscriptions.models import Alert, AlertKind, Backfill, BackfillState
from subscriptions.services import alerts
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver

from .processes import HubProcesses, show_tails, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CAP = 50
FLOOD = 10_000


def make_hub(redis, logs, **env):
    return HubProcesses(
        redis,
        logs,
        {"HUB_METRICS_FLUSH_SECONDS": "1", "HUB_REFUSALS_PER_MINUTE": str(CAP), **env},
    )


@pytest.fixture
def hub(redis, logs):
    processes = make_hub(redis, logs)
    yield processes
    processes.stop()
    show_tails(logs)


def test_a_flood_of_bad_requests_stores_no_more_than_the_cap(hub):
    source, _ = make_source("gridx", slug="flooded")
    hub.start_web()  # two gunicorn worker processes, each with its own buffer
    body = gridx_body()
    signed = get_provider("gridx").sign(body, "whsec_not-the-secret-0000", source, timezone.now())
    headers = {**signed.headers, "content-type": "application/json"}
    statuses: list[int] = []
    lock = threading.Lock()

    def flood(count: int) -> None:
        with httpx.Client(timeout=30) as client:
            answered = [
                client.post(
                    f"{hub.receive_url}/flooded/", content=body, headers=headers
                ).status_code
                for _ in range(count)
            ]
        with lock:
            statuses.extend(answered)

    threads = [threading.Thread(target=flood, args=(FLOOD // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [401] * FLOOD

    def all_counted() -> bool:
        total = RefusalMinute.objects.filter(source=source).aggregate(n=Sum("refused"))["n"]
        return total == FLOOD

    wait_until(all_counted, 30, "every refusal to be counted by the flushers")
    minutes = RefusalMinute.objects.filter(source=source)
    assert minutes.aggregate(most=Max("stored"))["most"] <= CAP
    stored = Refusal.objects.filter(source=source).count()
    assert stored == minutes.aggregate(n=Sum("stored"))["n"] <= CAP * minutes.count()
    dropped = ("hub_refusals_dropped_total", (("source", "flooded"),))
    wait_until(
        lambda: samples(hub).get(dropped) == FLOOD - stored, 15, "the dropped count in /metrics"
    )
    labels = (("outcome", "rejected"), ("reason", "signature"), ("source", "flooded"))
    assert samples(hub)[("hub_events_received_total", labels)] == FLOOD


def samples(hub) -> dict[tuple, float]:
    """/metrics as {(name, sorted labels): value}."""
    text = httpx.get(f"http://127.0.0.1:{hub.web_port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_failing_subscription_is_told_to_a_subscriber_the_mail_and_slack(redis, logs):
    with TestReceiver(default=Answer(status=500)) as broken, TestReceiver() as operator:
        with TestReceiver() as slack:
            hub = make_hub(
                redis,
                logs,
                HUB_ALERT_EMAILS="ops@example.com",
                EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend",
                HUB_ALERT_SLACK_URL=slack.url,
            )
            try:
                source, (secret,) = make_source("gridx")
                SubscriptionFactory(url=broken.url, name="billing", event_types=["*"])
                watcher = SubscriptionFactory(url=operator.url, event_types=["subscription.*"])
                watcher.sources.set([alerts.hub_source()])
                hub.start_web()
                hub.start_worker()
                for _ in range(4):
                    body = gridx_body(id=str(uuid.uuid4()))
                    assert hub.post_gridx(source.slug, body, secret).status_code == 200

                (got,) = operator.wait_for(1, timeout=60)
                alert = Webhook(watcher.secret).verify(got.body, got.headers)
                assert alert["type"] == "subscription.failing"
                assert alert["data"]["subscription"]["name"] == "billing"
                (posted,) = slack.wait_for(1, timeout=30)
                assert "*subscription.failing*" in json.loads(posted.body)["text"]
                wait_until(
                    lambda: (
                        "Subject: [hub] subscription.failing: billing"
                        in (logs / "worker.log").read_text()
                    ),
                    30,
                    "the alert mail",
                )
                assert Alert.objects.filter(cleared_at=None).count() == 1
            finally:
                hub.stop()


def test_a_source_falls_silent_and_recovers_on_the_sweep(hub):
    source, (secret,) = make_source("gridx", expected_interval=timedelta(seconds=2))
    hub.start_web()
    hub.start_worker()
    assert hub.post_gridx(source.slug, gridx_body(id="first"), secret).status_code == 200

    def silent_alerts():
        return list(Alert.objects.filter(kind=AlertKind.SOURCE_SILENT, cleared_at=None))

    wait_until(lambda: len(silent_alerts()) == 1, 30, "the source.silent alert")
    assert silent_alerts()[0].source == source
    assert samples(hub)[("hub_source_silent", (("source", source.slug),))] == 1
    assert hub.post_gridx(source.slug, gridx_body(id="second"), secret).status_code == 200
    wait_until(lambda: silent_alerts() == [], 30, "the alert to clear once an event came")


def test_a_backfill_through_the_api_is_sent_in_received_order(hub):
    source, _ = make_source("gridx", slug="gridx-history")
    start = timezone.now() - timedelta(days=2)
    events = Event.objects.bulk_create(
        [
            Event(
                source=source,
                external_id=f"old-{n:05d}",
                type="appliance/online",
                received_at=start + timedelta(seconds=n),
                raw_body=json.dumps({"id": f"old-{n:05d}"}).encode(),
                payload={"id": f"old-{n:05d}"},
                status="ignored",
            )
            for n in range(1200)
        ]
    )
    user = get_user_model().objects.create_superuser("ops", password="pw-for-tests-only")
    _, token = AuthToken.objects.create(user, expiry=None)
    with TestReceiver() as receiver:
        sub = SubscriptionFactory(url=receiver.url, event_types=["appliance/*"])
        hub.start_web()
        hub.start_worker()
        answer = httpx.post(
            f"http://127.0.0.1:{hub.web_port}/api/v1/subscriptions/{sub.pk}/backfill/",
            json={"received_after": (start - timedelta(minutes=1)).isoformat()},
            headers={"Authorization": f"Token {token}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["count"] == len(events)
        receiver.wait_for(len(events), timeout=120)
        ids = [json.loads(r.body)["id"] for r in receiver.requests]
        assert ids == [e.external_id for e in events]
        wait_until(
            lambda: Backfill.objects.get().state == BackfillState.DONE, 30, "the backfill's end"
        )
        assert Backfill.objects.get().queued == len(events)
