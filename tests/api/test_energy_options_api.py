"""The energy options through the management API: set, read back, refused when invalid, and
what the deliveries show."""

import pytest
from django.utils import timezone

from receivers.tests.factories import EventFactory
from subscriptions.models import Delivery, DeliveryStatus, Priority
from subscriptions.services import fanout
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = "/api/v1/subscriptions/"
OPTIONS = {
    "priority": "high",
    "filter": [
        {"path": "source", "op": "equals", "value": "/systems/site-north"},
        {"path": "data.power", "op": "gte", "value": 1000},
    ],
    "ordering_key": "data.evseId",
    "coalesce": [{"types": ["ev/measurement"], "key": "data.evseId"}],
    "expire_after": 3600,
    "expire_after_by_type": {"grid-signal-processor/*": 300},
}


def test_options_are_set_and_read_back(api):
    created = api.post(
        SUBSCRIPTIONS,
        {"name": "control", "url": "https://example.com/hook", "event_types": ["*"], **OPTIONS},
        format="json",
    )
    assert created.status_code == 201, created.json()
    shown = api.get(f"{SUBSCRIPTIONS}{created.json()['id']}/").json()
    assert {name: shown[name] for name in OPTIONS} == OPTIONS
    assert shown["filter_rules"] == ['source = "/systems/site-north"', "data.power >= 1000"]
    listed = api.get(SUBSCRIPTIONS, {"priority": "high"}).json()["results"]
    assert [s["name"] for s in listed] == ["control"]


def test_a_new_subscription_has_every_option_off(api):
    created = api.post(
        SUBSCRIPTIONS,
        {"name": "plain", "url": "https://example.com/hook", "event_types": ["*"]},
        format="json",
    )
    shown = created.json()
    assert shown["priority"] == Priority.NORMAL
    assert (shown["filter"], shown["coalesce"], shown["expire_after_by_type"]) == ([], [], {})
    assert (shown["ordering_key"], shown["expire_after"], shown["filter_rules"]) == ("", None, [])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("filter", [{"path": "data.power", "op": "gt", "value": "1000"}], "compares numbers"),
        ("filter", [{"path": "data.site", "op": "regex", "value": ".*"}], "'op' must be one of"),
        ("filter", "data.power > 1000", "a filter is a list of rules"),
        ("ordering_key", "data..evseId", "empty part"),
        ("coalesce", [{"types": ["ev/*"]}], "each rule is"),
        ("expire_after", 0, "greater than or equal to 1"),
        ("expire_after_by_type", {"ev/*": -5}, "from 1 to"),
        ("priority", "urgent", "not a valid choice"),
    ],
)
def test_invalid_options_get_a_clear_400(api, field, value, message):
    response = api.post(
        SUBSCRIPTIONS,
        {"name": "x", "url": "https://example.com/hook", "event_types": ["*"], field: value},
        format="json",
    )
    assert response.status_code == 400
    assert message in str(response.json()[field])


def test_changed_options_apply_to_waiting_deliveries(api):
    sub = SubscriptionFactory()
    event = EventFactory(payload={"data": {"evseId": "evse-9"}})
    fanout.fan_out([event.pk])
    patched = api.patch(
        f"{SUBSCRIPTIONS}{sub.pk}/",
        {"ordering_key": "data.evseId", "expire_after": 60},
        format="json",
    )
    assert patched.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.order_key == "evse-9"
    assert delivery.expires_at is not None and delivery.expires_at > timezone.now()

    api.patch(
        f"{SUBSCRIPTIONS}{sub.pk}/", {"ordering_key": "", "expire_after": None}, format="json"
    )
    delivery.refresh_from_db()
    assert (delivery.order_key, delivery.expires_at) == ("", None)


def test_deliveries_show_their_keys_and_the_new_statuses(api):
    sub = SubscriptionFactory(
        ordering_key="data.evseId", coalesce=[{"types": ["*"], "key": "data.evseId"}]
    )
    for n in range(2):
        fanout.fan_out([EventFactory(payload={"n": n, "data": {"evseId": "evse-1"}}).pk])
    Delivery.objects.filter(event__payload__n=0).update(status=DeliveryStatus.SUPERSEDED)
    rows = api.get("/api/v1/deliveries/", {"status": "superseded"}).json()["results"]
    assert len(rows) == 1
    assert (rows[0]["order_key"], rows[0]["coalesce_key"]) == ("evse-1", "0:evse-1")
    assert rows[0]["subscription"] == sub.pk
