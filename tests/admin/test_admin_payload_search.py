"""The event list's search box: an exact event id, or path=value inside the payload; and the
API's repeatable `?payload=path:value`."""

from urllib.parse import urlencode

import pytest

from receivers.tests.factories import DispatchedEventFactory, make_source
from tests.admin.pages import messages_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/receivers/event/"
EVENTS_API = "/api/v1/events/"


@pytest.fixture
def devices():
    source = make_source(slug="gridx-prod")[0]
    for external_id, appliance, power in (
        ("evt-heat-pump", "fc0a-77", 7.4),
        ("evt-wallbox", "b7d2-01", 11),
        ("evt-heat-pump-2", "fc0a-77", 3),
    ):
        DispatchedEventFactory(
            source=source,
            external_id=external_id,
            payload={"id": external_id, "data": {"applianceID": appliance, "power": power}},
        )


def listed(response) -> set[str]:
    return {event.external_id for event in response.context["cl"].result_list}


def search(client, text: str):
    return client.get(f"{CHANGELIST}?{urlencode({'q': text})}")


def test_the_admin_finds_events_by_a_device_id_in_the_payload(admin_client, devices):
    response = search(admin_client, "data.applianceID=fc0a-77")
    assert response.status_code == 200
    assert listed(response) == {"evt-heat-pump", "evt-heat-pump-2"}
    assert listed(search(admin_client, "data.applianceID=fc0a-77 data.power=3")) == {
        "evt-heat-pump-2"
    }
    assert listed(search(admin_client, "data.power=11")) == {"evt-wallbox"}
    assert listed(search(admin_client, 'data.power="11"')) == set()


def test_the_exact_event_id_search_stays(admin_client, devices):
    assert listed(search(admin_client, "evt-wallbox")) == {"evt-wallbox"}
    assert listed(search(admin_client, "evt-wall")) == set()


def test_the_search_combines_with_the_filters(admin_client, devices):
    other = make_source(slug="gridx-lab")[0]
    DispatchedEventFactory(
        source=other, external_id="evt-lab", payload={"data": {"applianceID": "fc0a-77"}}
    )
    query = urlencode({"q": "data.applianceID=fc0a-77", "source__id__exact": other.pk})
    assert listed(admin_client.get(f"{CHANGELIST}?{query}")) == {"evt-lab"}


@pytest.mark.parametrize(
    "text", ["data..applianceID=fc0a", "data.applianceID=", 'data.x="open', "=fc0a"]
)
def test_bad_syntax_in_the_admin_is_a_message_not_an_error(admin_client, devices, text):
    response = search(admin_client, text)
    assert response.status_code == 200
    assert listed(response) == set()
    (message,) = messages_of(response)
    assert "e.g. data.applianceID" in message or "needs a value" in message


def test_the_help_under_the_search_box_explains_payload_search(admin_client, devices):
    page = admin_client.get(CHANGELIST).content.decode()
    assert "data.applianceID=fc0a…" in page
    assert "payload[].meter_id=" in page


def test_the_api_filters_by_payload_terms_anded(api, devices):
    answer = api.get(EVENTS_API, {"payload": "data.applianceID:fc0a-77"})
    assert answer.status_code == 200
    assert {e["external_id"] for e in answer.json()["results"]} == {
        "evt-heat-pump",
        "evt-heat-pump-2",
    }
    answer = api.get(EVENTS_API, {"payload": ["data.applianceID:fc0a-77", "data.power:7.4"]})
    assert [e["external_id"] for e in answer.json()["results"]] == ["evt-heat-pump"]
    answer = api.get(EVENTS_API, {"payload": "data.applianceID:fc0a-77", "external_id": "nope"})
    assert answer.json()["results"] == []


@pytest.mark.parametrize(
    "value", ["data.applianceID", "data..x:1", ":1", "data.x:", 'data.x:"\\u0000"', "a b:1"]
)
def test_bad_payload_terms_in_the_api_are_a_400(api, devices, value):
    answer = api.get(EVENTS_API, {"payload": value})
    assert answer.status_code == 400
    assert answer.json()["payload"]


def test_too_many_api_terms_are_a_400(api, devices):
    answer = api.get(EVENTS_API, {"payload": [f"data.k{n}:1" for n in range(6)]})
    assert answer.status_code == 400
    assert "At most 5" in answer.json()["payload"][0]


def test_the_schema_documents_the_payload_parameter(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    parameters = schema["paths"]["/api/v1/events/"]["get"]["parameters"]
    (payload,) = [p for p in parameters if p["name"] == "payload"]
    assert payload["schema"]["type"] == "array"
    assert "data.applianceID:fc0a…" in payload["description"]
