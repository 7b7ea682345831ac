"""Model permissions on every API endpoint, as the admin checks them.

A staff user needs the model's view permission to read, add/change/delete to write, and
`subscriptions.replay_delivery` to replay; without them every endpoint answers 403.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from receivers.tests.factories import EventFactory, make_source
from subscriptions.models import Delivery
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows() -> dict[str, object]:
    source, _ = make_source("gridx", slug="perm-source")
    event = EventFactory(source=source)
    sub = SubscriptionFactory(url="http://127.0.0.1:9/hook")
    delivery = Delivery.objects.create(event=event, subscription=sub, webhook_id="msg_perm")
    return {"event": event.pk, "sub": sub.pk, "delivery": delivery.pk}


NEW_SOURCE = {"slug": "new-source", "provider": "gridx"}
NEW_SUBSCRIPTION = {"name": "new", "url": "https://new.example/hook", "event_types": ["*"]}

# (method, URL, body, the one permission the request needs)
ENDPOINTS = [
    ("get", "/api/v1/sources/", None, "receivers.view_source"),
    ("get", "/api/v1/sources/perm-source/", None, "receivers.view_source"),
    ("post", "/api/v1/sources/", NEW_SOURCE, "receivers.add_source"),
    ("put", "/api/v1/sources/perm-source/", NEW_SOURCE, "receivers.change_source"),
    ("patch", "/api/v1/sources/perm-source/", {"is_active": False}, "receivers.change_source"),
    ("delete", "/api/v1/sources/perm-source/", None, "receivers.delete_source"),
    ("get", "/api/v1/events/", None, "receivers.view_event"),
    ("get", "/api/v1/events/{event}/", None, "receivers.view_event"),
    ("post", "/api/v1/events/{event}/replay/", None, "subscriptions.replay_delivery"),
    ("get", "/api/v1/subscriptions/", None, "subscriptions.view_subscription"),
    ("get", "/api/v1/subscriptions/{sub}/", None, "subscriptions.view_subscription"),
    ("post", "/api/v1/subscriptions/", NEW_SUBSCRIPTION, "subscriptions.add_subscription"),
    ("put", "/api/v1/subscriptions/{sub}/", NEW_SUBSCRIPTION, "subscriptions.change_subscription"),
    ("patch", "/api/v1/subscriptions/{sub}/", {"name": "x"}, "subscriptions.change_subscription"),
    ("delete", "/api/v1/subscriptions/{sub}/", None, "subscriptions.delete_subscription"),
    ("get", "/api/v1/deliveries/", None, "subscriptions.view_delivery"),
    ("get", "/api/v1/deliveries/{delivery}/", None, "subscriptions.view_delivery"),
    ("post", "/api/v1/deliveries/{delivery}/replay/", None, "subscriptions.replay_delivery"),
]
IDS = [f"{method} {url}" for method, url, _, _ in ENDPOINTS]


def client_of(username: str, *permissions: str, staff: bool = True) -> APIClient:
    user = User.objects.create_user(username, password="pw", is_staff=staff)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))  # a fresh permission cache
    return client


def call(client: APIClient, method: str, url: str, body, rows: dict):
    return getattr(client, method)(url.format(**rows), body, format="json")


@pytest.mark.parametrize("method, url, body, permission", ENDPOINTS, ids=IDS)
def test_staff_without_permissions_gets_403(rows, method, url, body, permission):
    assert call(client_of("nobody"), method, url, body, rows).status_code == 403


@pytest.mark.parametrize("method, url, body, permission", ENDPOINTS, ids=IDS)
def test_the_one_permission_needed_is_enough(rows, method, url, body, permission):
    answer = call(client_of("allowed", permission), method, url, body, rows)
    assert answer.status_code in {200, 201, 202, 204}, answer.content


@pytest.mark.parametrize("method, url, body, permission", ENDPOINTS, ids=IDS)
def test_every_other_permission_is_not_enough(rows, method, url, body, permission):
    ours = Permission.objects.filter(content_type__app_label__in=["receivers", "subscriptions"])
    others = [f"{p.content_type.app_label}.{p.codename}" for p in ours]
    client = client_of("almost", *(p for p in others if p != permission))
    assert call(client, method, url, body, rows).status_code == 403


@pytest.mark.parametrize("method, url, body, permission", ENDPOINTS, ids=IDS)
def test_a_user_who_is_not_staff_gets_403_whatever_the_permissions(
    rows, method, url, body, permission
):
    client = client_of("outsider", permission, staff=False)
    assert call(client, method, url, body, rows).status_code == 403
