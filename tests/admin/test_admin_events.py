import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from receivers.admin.event_admin import EventTypeFilter
from receivers.admin.lists import EstimatedCountPaginator, distinct_values
from receivers.models import Event
from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.models import Attempt, DeliveryStatus
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/receivers/event/"


@pytest.fixture
def history():
    gridx = make_source(slug="gridx-prod")[0]
    edrv = make_source("edrv", slug="edrv-prod")[0]
    old = timezone.now() - timedelta(days=3)
    return {
        "online": DispatchedEventFactory(
            source=gridx, external_id="evt-online", type="appliance/online"
        ),
        "session": DispatchedEventFactory(
            source=edrv, external_id="evt-session", type="session.started"
        ),
        "test": DispatchedEventFactory(
            source=gridx, external_id="evt-ping", type="ping", is_test=True, status="ignored"
        ),
        "old": DispatchedEventFactory(
            source=edrv,
            external_id="evt-old",
            type="session.ended",
            received_at=old,
            status="pending",
        ),
        "sources": (gridx, edrv),
    }


def listed(response) -> set[str]:
    return {event.external_id for event in response.context["cl"].result_list}


def test_list_and_every_filter(admin_client, history):
    gridx, edrv = history["sources"]
    assert listed(admin_client.get(CHANGELIST)) == {
        "evt-online",
        "evt-session",
        "evt-ping",
        "evt-old",
    }
    cases = {
        f"source__id__exact={edrv.pk}": {"evt-session", "evt-old"},
        "type=session.started": {"evt-session"},
        "status__exact=pending": {"evt-old"},
        "is_test__exact=1": {"evt-ping"},
        "is_test__exact=0": {"evt-online", "evt-session", "evt-old"},
        "q=evt-session": {"evt-session"},
        "q=evt-sess": set(),
    }
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    window = {"received_at__gte": str(today), "received_at__lt": str(today + timedelta(days=1))}
    cases[urlencode(window)] = {"evt-online", "evt-session", "evt-ping"}
    for query, expected in cases.items():
        response = admin_client.get(f"{CHANGELIST}?{query}")
        assert response.status_code == 200, query
        assert listed(response) == expected, query


def test_type_filter_choices_come_from_a_skip_scan(admin_client, history):
    assert distinct_values(Event, "type", 10) == sorted(
        ["appliance/online", "session.started", "ping", "session.ended"]
    )
    assert distinct_values(Event, "type", 2) == ["appliance/online", "ping"]
    page = admin_client.get(CHANGELIST).content.decode()
    assert "?type=session.ended" in page
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST)
    assert not any("DISTINCT" in q["sql"].upper() for q in queries.captured_queries)
    assert EventTypeFilter.limit == 200


def test_list_never_counts_the_whole_table(admin_client, history):
    for query in ("", "?is_test__exact=0"):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(f"{CHANGELIST}{query}")
        assert response.status_code == 200
        counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
        assert counts and all("LIMIT" in sql.upper() for sql in counts)
    # The big columns stay in the database on the list.
    listing = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert listing and not any('"raw_body"' in sql for sql in listing)


def test_bounded_count_is_exact_below_the_cap(history):
    paginator = EstimatedCountPaginator(Event.objects.all(), 2)
    assert paginator.count == 4 and not paginator.is_estimate


@pytest.mark.postgres
def test_count_above_the_cap_is_the_planner_estimate(history, monkeypatch, admin_client):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 2)
    paginator = EstimatedCountPaginator(Event.objects.all(), 2)
    assert paginator.count >= 3 and paginator.is_estimate
    assert "about" in admin_client.get(CHANGELIST).content.decode()


def test_only_received_at_is_sortable(admin_client, history):
    page = admin_client.get(CHANGELIST).content.decode()
    assert "column-received_at" in page and "sortable column-received_at" in page
    assert "sortable column-type" not in page


def test_detail_shows_payload_headers_and_every_attempt(admin_client):
    source = make_source(slug="gridx-prod")[0]
    payload = {"id": "evt-1", "type": "appliance/online", "data": {"power": 3.7}}
    event = DispatchedEventFactory(
        source=source,
        payload=payload,
        headers={
            "content-type": "application/json",
            "x-signature": "sha512=abc",
            "X-Api-Token": "tok-123",
            "user-agent": "gridx",
        },
    )
    ok = SubscriptionFactory(name="billing")
    down = SubscriptionFactory(name="analytics")
    DeliveryFactory(event=event, subscription=ok, status=DeliveryStatus.SUCCEEDED, attempts=(200,))
    DeliveryFactory(event=event, subscription=down, attempts=(500, 503))
    page = admin_client.get(
        reverse("admin:receivers_event_change", args=[event.pk])
    ).content.decode()
    assert json.dumps(payload, indent=2).replace('"', "&quot;") in page
    assert "sha512=abc" not in page and "tok-123" not in page
    assert "gridx" in page and "****" in page
    assert "billing" in page and "analytics" in page
    assert page.count("HTTP 500") == 1 and "HTTP 503" in page and "HTTP 200" in page
    assert "Replay 1 failed delivery" in page
    assert 'name="_save"' not in page


def test_events_are_read_only(admin_client, history):
    event = history["online"]
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert (
        admin_client.post(
            reverse("admin:receivers_event_change", args=[event.pk]), {"type": "x"}
        ).status_code
        == 403
    )
    assert (
        admin_client.get(reverse("admin:receivers_event_delete", args=[event.pk])).status_code
        == 403
    )
    assert "delete_selected" not in admin_client.get(CHANGELIST).content.decode()


def test_replay_failed_from_the_event_page(admin_client, failed_delivery, receiver):
    event = failed_delivery.event
    url = reverse("admin:receivers_event_replay_failed", args=[event.pk])
    response = admin_client.post(url, follow=True)
    assert "Queued 1 failed delivery for replay." in messages_of(response)
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.SUCCEEDED
    attempts = list(Attempt.objects.filter(delivery=failed_delivery).order_by("pk"))
    assert [(a.status_code, a.is_replay) for a in attempts] == [(500, False), (200, True)]
    assert LogEntry.objects.filter(
        object_id=str(event.pk), change_message__contains="Replayed"
    ).exists()
    assert LogEntry.objects.filter(
        object_id=str(failed_delivery.pk), change_message="Replayed."
    ).exists()


def test_replay_failed_action_on_events(admin_client, failed_delivery, receiver):
    other = DeliveryFactory(
        event=DispatchedEventFactory(source=failed_delivery.event.source),
        subscription=failed_delivery.subscription,
        status=DeliveryStatus.SUCCEEDED,
        attempts=(200,),
    )
    response = admin_client.post(
        CHANGELIST,
        {
            "action": "replay_failed_deliveries",
            "_selected_action": [failed_delivery.event_id, other.event_id],
        },
        follow=True,
    )
    assert "Queued 1 failed delivery for replay." in messages_of(response)
    assert len(receiver.requests) == 1


def test_replay_needs_its_permission(client, failed_delivery):
    client.force_login(StaffUserFactory(username="viewer", permissions=["receivers.view_event"]))
    event = failed_delivery.event
    page = client.get(reverse("admin:receivers_event_change", args=[event.pk])).content.decode()
    assert "failed deliver" not in page.split("object-tools")[1][:500]
    assert "replay_failed_deliveries" not in client.get(CHANGELIST).content.decode()
    url = reverse("admin:receivers_event_replay_failed", args=[event.pk])
    assert client.post(url).status_code == 403
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.FAILED
