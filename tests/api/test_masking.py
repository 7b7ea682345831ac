"""Credentials are never shown back: subscription static headers are write-only values, masked
on read in the API and the admin; stored event headers are masked in the API by the admin's
rule; and responses carry no write-only field but the documented one-time creation answer."""

from __future__ import annotations

import pytest
from django.urls import reverse

from receivers.tests.factories import EventFactory, make_source
from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db

CREDENTIAL = "Bearer subscriber-credential-0042"
URL = "https://subscriber.example/hook"


def create(api, headers: dict) -> dict:
    answer = api.post(
        "/api/v1/subscriptions/",
        {"name": "billing", "url": URL, "event_types": ["*"], "headers": headers},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_static_headers_are_masked_in_every_api_answer(api):
    created = create(api, {"Authorization": CREDENTIAL, "X-Env": "production"})
    assert created["headers"] == {"Authorization": "****0042", "X-Env": "****"}
    listed = api.get("/api/v1/subscriptions/").content.decode()
    shown = api.get(f"/api/v1/subscriptions/{created['id']}/").content.decode()
    assert CREDENTIAL not in listed and CREDENTIAL not in shown
    assert Subscription.objects.get().headers["Authorization"] == CREDENTIAL


def test_a_masked_value_sent_back_keeps_the_stored_one(api):
    created = create(api, {"Authorization": CREDENTIAL, "X-Env": "production"})
    url = f"/api/v1/subscriptions/{created['id']}/"
    headers = {**created["headers"], "X-Env": "staging", "X-New": "1"}
    assert api.patch(url, {"headers": headers}, format="json").status_code == 200
    assert Subscription.objects.get().headers == {
        "Authorization": CREDENTIAL,
        "X-Env": "staging",
        "X-New": "1",
    }
    assert api.patch(url, {"headers": {}}, format="json").status_code == 200
    assert Subscription.objects.get().headers == {}


def test_the_admin_shows_static_headers_masked_and_keeps_them_on_save(admin_client):
    sub = Subscription.objects.create(
        name="billing", url=URL, event_types=["*"], headers={"Authorization": CREDENTIAL}
    )
    change = reverse("admin:subscriptions_subscription_change", args=[sub.pk])
    page = admin_client.get(change).content.decode()
    assert CREDENTIAL not in page and "****0042" in page
    form = {
        "name": "billing",
        "url": URL,
        "event_types": '["*"]',
        "payload_format": "original",
        "headers_name": ["Authorization", "X-Env"],
        "headers_value": ["****0042", "prod"],
        "timeout_seconds": "15",
    }
    assert admin_client.post(change, form).status_code == 302
    sub.refresh_from_db()
    assert sub.headers == {"Authorization": CREDENTIAL, "X-Env": "prod"}


def test_event_headers_are_masked_in_the_api_as_in_the_admin(api, admin_client):
    source, _ = make_source("gridx")
    event = EventFactory(
        source=source,
        headers={
            "content-type": "application/json",
            "x-signature": "sha512=abc",
            "X-Api-Token": "tok-123",
            "Cookie": "session=1",
            "user-agent": "gridx",
        },
    )
    detail = api.get(f"/api/v1/events/{event.pk}/").json()
    assert detail["headers"] == {
        "content-type": "application/json",
        "x-signature": "****",
        "X-Api-Token": "****",
        "Cookie": "****",
        "user-agent": "gridx",
    }
    page = admin_client.get(reverse("admin:receivers_event_change", args=[event.pk]))
    assert "tok-123" not in page.content.decode()


def operation(schema: dict, path: str, method: str) -> dict:
    return schema["paths"][path][method]


def response_properties(schema: dict, path: str, method: str, status: str) -> set[str]:
    content = operation(schema, path, method)["responses"][status]["content"]
    reference = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    return set(schema["components"]["schemas"][reference]["properties"])


def test_the_schema_documents_the_one_time_secrets_and_nothing_else(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    assert "secret" in response_properties(schema, "/api/v1/subscriptions/", "post", "201")
    assert "secrets" in response_properties(schema, "/api/v1/sources/", "post", "201")
    for path, method, status in [
        ("/api/v1/subscriptions/{id}/", "get", "200"),
        ("/api/v1/subscriptions/{id}/", "patch", "200"),
        ("/api/v1/sources/{slug}/", "get", "200"),
        ("/api/v1/sources/{slug}/", "put", "200"),
    ]:
        shown = response_properties(schema, path, method, status)
        assert not shown & {"secret", "secrets"}, (path, method)


def test_an_update_does_not_echo_the_signing_secret(api):
    created = create(api, {})
    new = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    answer = api.patch(f"/api/v1/subscriptions/{created['id']}/", {"secret": new}, format="json")
    assert answer.status_code == 200 and "secret" not in answer.json()
    assert Subscription.objects.get().secret == new
