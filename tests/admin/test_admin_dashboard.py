from datetime import timedelta

import pytest
from django.utils import timezone

from hub import dashboard
from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.models import Attempt, DeliveryStatus
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


@pytest.fixture
def traffic():
    now = timezone.now()
    gridx = make_source(slug="gridx-prod")[0]
    edrv = make_source("edrv", slug="edrv-prod")[0]
    for hours_ago, source, count in (
        (0, gridx, 3),
        (2, edrv, 2),
        (30, gridx, 4),
        (24 * 8, edrv, 5),
    ):
        for _ in range(count):
            DispatchedEventFactory(source=source, received_at=now - timedelta(hours=hours_ago))
    return gridx, edrv


def test_charts_count_per_hour_and_source(traffic):
    charts, legend = dashboard.charts(timezone.now())
    day, week = charts
    assert (day.total, week.total) == (5, 9)
    assert len(day.x_labels) == 8 and len(week.x_labels) == 7
    assert {(s.name, s.last_day, s.last_week) for s in legend} == {
        ("gridx-prod", 3, 7),
        ("edrv-prod", 2, 2),
    }
    tallest = min(bar.y for bar in week.bars)
    assert tallest == pytest.approx(dashboard.TOP, abs=0.01)  # the busiest hour fills the chart
    assert any("gridx-prod: 4" in bar.title for bar in week.bars)


def test_dashboard_page(admin_client, traffic):
    gridx, _ = traffic
    sub = SubscriptionFactory(name="billing", consecutive_failures=2)
    waiting_event = DispatchedEventFactory(
        source=gridx, received_at=timezone.now() - timedelta(hours=5)
    )
    waiting = DeliveryFactory(
        event=waiting_event, subscription=sub, status=DeliveryStatus.RETRYING, attempts=(500, 502)
    )
    DeliveryFactory(
        event=DispatchedEventFactory(source=gridx),
        subscription=sub,
        status=DeliveryStatus.SUCCEEDED,
        attempts=(200,),
    )
    DeliveryFactory(
        event=DispatchedEventFactory(source=gridx),
        subscription=sub,
        status=DeliveryStatus.FAILED,
        attempts=(500,),
    )
    response = admin_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('<svg class="hub-chart"') == 2 and "<rect" in page
    assert "gridx-prod: 6 in 24 h, 10 in 7 days" in page
    row = response.context["subscriptions"][0]
    assert (row.attempts, row.failed_attempts, row.backlog, row.failed) == (4, 3, 1, 1)
    assert "75.0 % of 4" in page
    assert response.context["oldest_delivery"] == waiting
    assert waiting_event.external_id in page
    assert f"/admin/subscriptions/delivery/{waiting.pk}/change/" in page
    assert Attempt.objects.count() == 4


def test_dashboard_is_linked_and_protected(client, admin_client):
    assert 'href="/admin/dashboard/"' in admin_client.get("/admin/").content.decode()
    assert client.get(URL).status_code == 302
    client.force_login(StaffUserFactory(username="nobody"))
    assert client.get(URL).status_code == 403
    client.force_login(StaffUserFactory(username="viewer", permissions=["receivers.view_event"]))
    assert client.get(URL).status_code == 200


def test_dashboard_when_empty(admin_client):
    page = admin_client.get(URL).content.decode()
    assert "No event in the last 7 days." in page
    assert "nothing is waiting" in page


def test_finished_hours_are_cached_and_the_current_hour_is_live(django_assert_num_queries):
    source = make_source(slug="gridx-prod")[0]
    now = timezone.now()
    DispatchedEventFactory(source=source, received_at=now - timedelta(hours=3))
    assert dashboard.charts(now)[0][1].total == 1
    DispatchedEventFactory(
        source=source, received_at=now - timedelta(hours=2)
    )  # a finished hour: cached
    DispatchedEventFactory(source=source, received_at=now)  # the current hour: counted live
    with django_assert_num_queries(2):  # the current hour, and the source names
        assert dashboard.charts(now)[0][1].total == 2
