"""Everything the admin does has an endpoint, behind the permission the admin asks for: send a
test event, rotate a source's secret and a subscription's signing secret, pause and resume,
replay the failed deliveries, backfill."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook

from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import gridx_body, post, sign
from subscriptions.models import Backfill, Delivery, DeliveryStatus
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from subscriptions.tests.receiver import Answer
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def as_staff(*permissions: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(StaffUserFactory(permissions=list(permissions)))
    return client


def test_send_a_test_event(api, receiver):
    receiver.default = Answer.json(200)
    sub = SubscriptionFactory(url=receiver.url)
    answer = api.post(f"/api/v1/subscriptions/{sub.pk}/send-test/")
    assert answer.status_code == 200
    result = answer.json()
    assert result["succeeded"] is True and result["status_code"] == 200
    (got,) = receiver.wait_for(1)
    assert Webhook(sub.secret).verify(got.body, got.headers)["type"] == "ping"
    assert not Delivery.objects.exists()
    receiver.default = Answer(status=503, body=b"down")
    failed = api.post(f"/api/v1/subscriptions/{sub.pk}/send-test/").json()
    assert (failed["succeeded"], failed["status_code"], failed["answer"]) == (False, 503, "down")


def test_rotate_a_source_secret(api, client):
    source, (old,) = make_source("gridx", slug="gridx-a")
    answer = api.post("/api/v1/sources/gridx-a/rotate-secret/", {"grace_hours": 1}, format="json")
    assert answer.status_code == 200
    new = answer.json()["secret"]
    assert new.startswith("whsec_") and answer.json()["grace_hours"] == 1
    body = gridx_body()
    for secret in (old, new):  # both valid during the grace
        assert post(client, source, body, sign(source, body, secret)).status_code == 200
        body = gridx_body(id=f"after-{secret[-4:]}")
    # Values are encrypted at rest: found by decrypting, not by a query.
    expiring = next(s for s in source.secrets.all() if s.value == old).expires_at
    assert timedelta(minutes=59) < expiring - timezone.now() <= timedelta(hours=1)
    assert new not in api.get("/api/v1/sources/gridx-a/").content.decode()
    given = api.post(
        "/api/v1/sources/gridx-a/rotate-secret/", {"secret": "whsec_chosen-by-the-platform"}
    )
    assert given.json()["secret"] == "whsec_chosen-by-the-platform"
    bad = api.post("/api/v1/sources/gridx-a/rotate-secret/", {"grace_hours": -1}, format="json")
    assert bad.status_code == 400


def test_rotate_a_signing_secret(api, receiver):
    sub = SubscriptionFactory(url=receiver.url)
    old = sub.secret
    answer = api.post(f"/api/v1/subscriptions/{sub.pk}/rotate-secret/")
    assert answer.status_code == 200
    sub.refresh_from_db()
    assert answer.json()["secret"] == sub.secret != old
    assert sub.previous_secret == old and answer.json()["previous_secret_expires_at"]
    listed = api.get(f"/api/v1/subscriptions/{sub.pk}/").content.decode()
    assert sub.secret not in listed


def test_pause_and_resume(api):
    sub = SubscriptionFactory()
    paused = api.post(f"/api/v1/subscriptions/{sub.pk}/pause/")
    assert paused.status_code == 200 and paused.json()["is_paused"] is True
    assert "through the API" in paused.json()["disabled_reason"]
    resumed = api.post(f"/api/v1/subscriptions/{sub.pk}/resume/")
    assert resumed.json()["is_paused"] is False and resumed.json()["is_active"] is True
    assert api.post("/api/v1/subscriptions/999999/pause/").status_code == 404


def test_replay_the_failed_deliveries(api, receiver):
    sub = SubscriptionFactory(url=receiver.url)
    DeliveryFactory(subscription=sub)
    DeliveryFactory(subscription=sub)
    answer = api.post(f"/api/v1/subscriptions/{sub.pk}/replay-failed/")
    assert answer.status_code == 202 and answer.json() == {"replayed": 2}
    receiver.wait_for(2)
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SUCCEEDED}


def test_backfill_with_a_preview_then_for_real(api, receiver):
    source, _ = make_source("gridx", slug="gridx-a")
    before = timezone.now() - timedelta(hours=2)
    for n in range(3):
        EventFactory(source=source, received_at=before + timedelta(minutes=n))
    sub = SubscriptionFactory(url=receiver.url)
    url = f"/api/v1/subscriptions/{sub.pk}/backfill/"
    since = (before - timedelta(minutes=1)).isoformat()
    preview = api.post(url, {"received_after": since, "preview": True}, format="json")
    assert preview.status_code == 200
    assert preview.json() == {"count": 3, "already_delivered": 0}
    assert not Backfill.objects.exists()
    started = api.post(url, {"received_after": since, "sources": ["gridx-a"]}, format="json")
    assert started.status_code == 202
    assert started.json() == {"backfill": Backfill.objects.get().pk, "count": 3}
    progress = api.get(f"/api/v1/backfills/{started.json()['backfill']}/").json()
    assert progress["total"] == 3 and progress["sources"] == ["gridx-a"]


def test_backfill_requests_are_checked(api):
    sub = SubscriptionFactory()
    url = f"/api/v1/subscriptions/{sub.pk}/backfill/"
    now = timezone.now()
    backwards = {"received_after": now.isoformat(), "received_before": (now - timedelta(1))}
    assert api.post(url, backwards, format="json").status_code == 400
    assert api.post(url, {}, format="json").status_code == 400
    unknown = {"received_after": "2026-01-01T00:00:00Z", "sources": ["nope"]}
    assert api.post(url, unknown, format="json").status_code == 400
    not_a_list = {"received_after": "2026-01-01T00:00:00Z", "event_types": "appliance/*"}
    assert api.post(url, not_a_list, format="json").status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("post", "/api/v1/subscriptions/{sub}/pause/", "subscriptions.change_subscription"),
        ("post", "/api/v1/subscriptions/{sub}/resume/", "subscriptions.change_subscription"),
        ("post", "/api/v1/subscriptions/{sub}/rotate-secret/", "subscriptions.change_subscription"),
        ("post", "/api/v1/subscriptions/{sub}/send-test/", "subscriptions.change_subscription"),
        ("post", "/api/v1/subscriptions/{sub}/replay-failed/", "subscriptions.replay_delivery"),
        ("post", "/api/v1/subscriptions/{sub}/backfill/", "subscriptions.add_backfill"),
        ("post", "/api/v1/sources/{source}/rotate-secret/", "receivers.change_source"),
        ("post", "/api/v1/events/{event}/replay/", "subscriptions.replay_delivery"),
        ("post", "/api/v1/deliveries/{delivery}/replay/", "subscriptions.replay_delivery"),
        ("get", "/api/v1/backfills/", "subscriptions.view_backfill"),
        ("get", "/api/v1/rejections/", "receivers.view_refusal"),
    ],
)
def test_each_endpoint_needs_the_permission_the_admin_asks_for(method, path, permission, receiver):
    delivery = DeliveryFactory(subscription=SubscriptionFactory(url=receiver.url))
    source, _ = make_source("gridx")
    url = path.format(
        sub=delivery.subscription_id,
        source=source.slug,
        event=delivery.event_id,
        delivery=delivery.pk,
    )
    payload = {"received_after": "2026-01-01T00:00:00Z"}
    without = getattr(as_staff(), method)(url, payload, format="json")
    assert without.status_code == 403
    allowed = getattr(as_staff(permission), method)(url, payload, format="json")
    assert allowed.status_code in (200, 202), allowed.content
