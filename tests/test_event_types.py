"""Event types that could never be relayed are refused when received, and no outbound header
is ever built that http.client cannot send; gridX's type may follow `events/` anywhere."""

from __future__ import annotations

import json

import pytest

from receivers.models import Event
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import GRIDX_EVENT, gridx_body, post, sign
from receivers.text import sendable_header_value
from subscriptions.models import Delivery, Subscription
from subscriptions.payloads import build_request
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

UNTYPED = json.dumps(GRIDX_EVENT).encode()


def post_signed(client, source, secret, body, path=""):
    return post(client, source, body, sign(source, body, secret), path=path)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("gridx/events/appliance/offline", "appliance/offline"),
        ("events/appliance/offline", "appliance/offline"),
        (
            "v1/gridx/events/grid-signal-processor/limitation-of-power-consumption/set",
            "grid-signal-processor/limitation-of-power-consumption/set",
        ),
        ("appliance/online", "appliance/online"),
    ],
)
def test_gridx_type_is_what_follows_the_events_segment(client, path, expected):
    source, (secret,) = make_source("gridx")
    assert post_signed(client, source, secret, UNTYPED, path=path).status_code == 200
    assert Event.objects.get().type == expected


@pytest.mark.parametrize(
    "path", ["events/appliance%0D/offline", "events/appliance%09online", "events/%7F"]
)
def test_a_type_with_control_characters_in_the_path_is_400(client, path):
    source, (secret,) = make_source("gridx")
    answer = post_signed(client, source, secret, UNTYPED, path=path)
    assert answer.status_code == 400
    assert "type" in answer.json()["error"]
    assert not Event.objects.exists()


@pytest.mark.parametrize("event_type", ["appliance/\r\nonline", "ev/\x00", "ev/☃", "ev/\u2028x"])
def test_a_signed_type_that_cannot_be_a_header_is_400(client, event_type):
    source, (secret,) = make_source("gridx")
    answer = post_signed(client, source, secret, gridx_body(type=event_type))
    assert answer.status_code == 400
    assert not Event.objects.exists()


def test_a_latin_1_type_is_accepted(client):
    source, (secret,) = make_source("gridx")
    assert post_signed(client, source, secret, gridx_body(type="appliance/éteint")).status_code
    assert Event.objects.get().type == "appliance/éteint"


@pytest.mark.parametrize("event_type", ["appliance/\r\nonline", "ev/☃", "ev/\x01", "ok"])
def test_outbound_headers_are_always_sendable(event_type):
    # Rows stored before types and static headers were checked.
    event = EventFactory(type=event_type)
    sub = SubscriptionFactory()
    Subscription.objects.filter(pk=sub.pk).update(headers={"X-Key": "a\r\nb", "Bad Name": "1"})
    sub.refresh_from_db()
    Delivery.objects.create(event=event, subscription=sub, webhook_id="msg_x")
    delivery = Delivery.objects.select_related("event__source").get()
    _, headers = build_request(delivery, sub, event.received_at)
    for name, value in headers.items():
        assert sendable_header_value(value), (name, value)
        assert " " not in name
    assert headers["x-hub-event-type"] == event.type or "%" in headers["x-hub-event-type"]
