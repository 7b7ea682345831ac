"""Hostile input to the management API and the admin gets a 4xx, never a 500."""

from __future__ import annotations

import json

import pytest

from receivers.tests.factories import EventFactory, make_source
from subscriptions.models import Subscription

pytestmark = pytest.mark.django_db

NUL = "\x00"
SURROGATE = "\ud800"


def raw_json(value) -> str:
    """JSON text as a client may send it: lone surrogates stay `\\ud800` escapes."""
    return json.dumps(value)


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    "field",
    ["event_types", "header name", "header value", "sources", "name"],
)
def test_subscription_with_a_nul_or_a_lone_surrogate_is_400(api, field, bad):
    make_source("gridx", slug="real-source")
    body = {"name": "x", "url": "https://subscriber.example/hook", "event_types": ["*"]}
    if field == "event_types":
        body["event_types"] = [f"appliance/{bad}"]
    elif field == "header name":
        body["headers"] = {f"X-{bad}": "1"}
    elif field == "header value":
        body["headers"] = {"X-Key": f"v{bad}"}
    elif field == "sources":
        body["sources"] = ["real-source", f"x{bad}"]
    else:
        body["name"] = f"x{bad}"
    answer = api.post("/api/v1/subscriptions/", raw_json(body), content_type="application/json")
    assert answer.status_code == 400, answer.content
    assert {"header": "headers"}.get(field.split()[0], field) in answer.json()
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Key": "line\r\nInjected: yes"},
        {"Bad Name": "1"},
        {"X-Key": "non-latin-1 ☃"},
        {"": "1"},
    ],
)
def test_subscription_headers_that_cannot_be_sent_are_400(api, headers):
    body = {"name": "x", "url": "https://s.example/hook", "event_types": ["*"], "headers": headers}
    answer = api.post("/api/v1/subscriptions/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert "headers" in answer.json()


@pytest.mark.parametrize(
    "query",
    [
        "received_after=2020-01-01T00:00:00%2B18:30",
        "received_before=2020-01-01T00:00:00-23:59",
        "received_after=0001-01-01T00:00:00%2B01:00",
        "received_before=9999-12-31T23:59:59-01:00",
        "type=%00",
        "source=%00",
        "external_id=%00",
    ],
)
def test_event_filters_out_of_range_or_with_nul_are_400(api, query):
    EventFactory()
    answer = api.get(f"/api/v1/events/?{query}")
    assert answer.status_code == 400, answer.content


def test_a_normal_offset_still_filters(api):
    EventFactory()
    assert api.get("/api/v1/events/?received_after=2020-01-01T00:00:00%2B14:00").json()["count"]


@pytest.mark.parametrize("path", ["%00", "%00x", "a%00"])
def test_source_lookup_with_nul_is_400(api, path):
    assert api.get(f"/api/v1/sources/{path}/").status_code == 400


# The admin


@pytest.mark.parametrize("query", ["type=%00", "q=%00", "status__exact=%00"])
def test_event_list_with_nul_in_the_query_is_400(admin_client, query):
    EventFactory()
    assert admin_client.get(f"/admin/receivers/event/?{query}").status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/admin/receivers/source/abc/rotate-secret/",
        "/admin/receivers/event/abc/replay-failed/",
        "/admin/subscriptions/delivery/abc/replay/",
        "/admin/subscriptions/subscription/abc/pause/run/",
        "/admin/subscriptions/subscription/abc/replay-failed/run/",
        "/admin/subscriptions/subscription/1.5/resume/run/",
    ],
)
def test_admin_operations_with_a_non_numeric_id_are_404(admin_client, url):
    assert admin_client.post(url).status_code == 404


def test_admin_operations_with_a_nul_in_the_id_are_400(admin_client):
    assert admin_client.post("/admin/receivers/source/%00/rotate-secret/").status_code == 400
