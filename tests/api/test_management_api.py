"""The management API: token auth, sources with write-only secrets, events, subscriptions."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from receivers.models import Source
from receivers.providers.base import token_digest
from receivers.tests.factories import EventFactory
from subscriptions.models import Delivery, DeliveryStatus, Subscription
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


def test_anonymous_requests_are_refused():
    assert APIClient().get("/api/v1/events/").status_code == 401


def test_create_source_shows_secret_once_then_never(api):
    answer = api.post(
        "/api/v1/sources/",
        {"slug": "xenon", "provider": "gridx", "secrets": ["whsec_abcdefghijklmnop"]},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["receive_url"].endswith("/hooks/xenon/")
    assert answer.json()["secrets"] == ["whsec_abcdefghijklmnop"]
    listed = api.get("/api/v1/sources/").content.decode()
    detail = api.get("/api/v1/sources/xenon/").json()
    assert "whsec_abcdefghijklmnop" not in listed
    assert "secrets" not in detail and detail["active_secrets"] == ["****mnop"]


def test_create_source_generates_a_secret_when_none_is_given(api):
    answer = api.post("/api/v1/sources/", {"slug": "jedlix", "provider": "jedlix"}, format="json")
    assert answer.status_code == 201
    (secret,) = answer.json()["secrets"]
    assert Source.objects.get(slug="jedlix").secrets.get().value == token_digest(secret)


def test_patch_and_delete_source(api):
    api.post("/api/v1/sources/", {"slug": "ev", "provider": "edrv"}, format="json")
    assert api.patch("/api/v1/sources/ev/", {"is_active": False}, format="json").status_code == 200
    assert not Source.objects.get(slug="ev").is_active
    assert api.delete("/api/v1/sources/ev/").status_code == 204


def test_invalid_source_gets_a_clear_error(api):
    answer = api.post("/api/v1/sources/", {"slug": "x y", "provider": "nope"}, format="json")
    assert answer.status_code == 400
    assert set(answer.json()) >= {"slug", "provider"}


def test_an_hmac_timestamp_must_be_signed(api):
    options = {"slug": "acme", "provider": "hmac", "hmac_header": "X-Sig"}
    unsigned = api.post(
        "/api/v1/sources/", {**options, "hmac_timestamp_header": "X-Time"}, format="json"
    )
    assert unsigned.status_code == 400
    assert "{header:X-Time}" in unsigned.json()["hmac_timestamp_header"][0]
    signed = {
        **options,
        "hmac_timestamp_header": "X-Time",
        "hmac_template": "{header:X-Time}.{body}",
    }
    created = api.post("/api/v1/sources/", signed, format="json")
    assert created.status_code == 201
    assert created.json()["hmac_timestamp_header"] == "X-Time"
    # Changing the template later is checked against the stored timestamp header.
    changed = api.patch("/api/v1/sources/acme/", {"hmac_template": "{body}"}, format="json")
    assert changed.status_code == 400


def test_event_list_filters_and_detail(api):
    old = EventFactory(type="ev/plugged", received_at=timezone.now() - timedelta(days=2))
    new = EventFactory(type="appliance/online", is_test=True)
    page = api.get("/api/v1/events/").json()
    assert [item["id"] for item in page["results"]] == [new.pk, old.pk]
    assert set(page["results"][0]) == {
        "id",
        "source",
        "external_id",
        "type",
        "is_test",
        "status",
        "received_at",
    }
    assert api.get("/api/v1/events/", {"type": "ev/plugged"}).json()["count"] == 1
    assert api.get("/api/v1/events/", {"source": old.source.slug}).json()["count"] == 1
    assert api.get("/api/v1/events/", {"is_test": "true"}).json()["count"] == 1
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert api.get("/api/v1/events/", {"received_after": since}).json()["count"] == 1
    assert api.get("/api/v1/events/", {"status": "pending"}).json()["count"] == 2
    detail = api.get(f"/api/v1/events/{new.pk}/").json()
    assert detail["payload"] == new.payload and "headers" in detail


def test_subscription_crud_shows_signing_secret_once(api):
    created = api.post(
        "/api/v1/subscriptions/",
        {
            "name": "billing",
            "url": "https://billing.internal.example/hook",
            "event_types": ["session.*"],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    sub_id = created.json()["id"]
    shown = api.get(f"/api/v1/subscriptions/{sub_id}/").json()
    assert "secret" not in shown and secret not in str(api.get("/api/v1/subscriptions/").json())
    assert (
        api.patch(
            f"/api/v1/subscriptions/{sub_id}/", {"is_active": False}, format="json"
        ).status_code
        == 200
    )
    assert not Subscription.objects.get(pk=sub_id).is_active
    assert api.delete(f"/api/v1/subscriptions/{sub_id}/").status_code == 204


def test_subscription_rejects_non_http_targets(api):
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "x", "url": "ftp://example.com/x", "event_types": ["*"]},
        format="json",
    )
    assert answer.status_code == 400


def test_deliveries_filter_and_replay(api):
    sub = SubscriptionFactory(url="http://127.0.0.1:9/nothing-listens")
    event = EventFactory()
    delivery = Delivery.objects.create(
        event=event, subscription=sub, webhook_id="msg_x", status=DeliveryStatus.FAILED
    )
    listed = api.get("/api/v1/deliveries/", {"status": "failed", "subscription": sub.pk}).json()
    assert [d["id"] for d in listed["results"]] == [delivery.pk]
    assert api.post(f"/api/v1/deliveries/{delivery.pk}/replay/").json() == {"replayed": 1}
    assert api.post(f"/api/v1/events/{event.pk}/replay/").status_code == 202
    delivery.refresh_from_db()
    assert delivery.attempt_count >= 1  # the eager worker tried again (nothing listens there)


def test_openapi_schema_is_served(api):
    answer = api.get("/api/v1/schema/")
    assert answer.status_code == 200
    assert b"/api/v1/sources/" in answer.content
