"""The energy options in the admin: edited on the subscription's form (invalid ones refused
with the reason), the filter shown as rules, and the options at a glance in the list."""

import json

import pytest
from django.urls import reverse

from subscriptions.models import DeliveryStatus, Priority, Subscription
from subscriptions.tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/subscriptions/subscription/"


def form_data(**fields) -> dict:
    return {
        "name": "control",
        "url": "https://example.com/hook",
        "event_types": '["*"]',
        "payload_format": "original",
        "headers": "{}",
        "timeout_seconds": "15",
        **fields,
    }


def test_the_options_are_edited_on_the_form(admin_client):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        form_data(
            priority="high",
            filter=json.dumps([{"path": "data.siteId", "op": "in", "value": ["north", "east"]}]),
            ordering_key="data.applianceID",
            coalesce=json.dumps([{"types": ["ev/measurement"], "key": "data.applianceID"}]),
            expire_after="600",
            expire_after_by_type='{"grid-signal-processor/*": 300}',
        ),
    )
    assert response.status_code == 302
    sub = Subscription.objects.get()
    assert sub.priority == Priority.HIGH
    assert sub.filter == [{"path": "data.siteId", "op": "in", "value": ["north", "east"]}]
    assert (sub.ordering_key, sub.expire_after) == ("data.applianceID", 600)
    assert sub.expire_after_by_type == {"grid-signal-processor/*": 300}


def test_empty_boxes_leave_every_option_off(admin_client):
    fields = {"priority": "", "filter": "", "coalesce": "", "expire_after_by_type": ""}
    assert admin_client.post(f"{CHANGELIST}add/", form_data(**fields)).status_code == 302
    sub = Subscription.objects.get()
    assert sub.priority == Priority.NORMAL
    assert (sub.filter, sub.coalesce, sub.expire_after_by_type) == ([], [], {})


def test_an_invalid_filter_is_refused_with_the_reason(admin_client):
    bad = json.dumps([{"path": "data.power", "op": "gt", "value": "a lot"}])
    response = admin_client.post(f"{CHANGELIST}add/", form_data(filter=bad))
    assert response.status_code == 200
    assert "rule 1: &#x27;gt&#x27; compares numbers" in response.content.decode()
    assert not Subscription.objects.exists()


def test_the_filter_reads_as_rules_and_the_list_shows_the_options(admin_client):
    sub = SubscriptionFactory(
        name="control",
        priority=Priority.HIGH,
        filter=[
            {"path": "source", "op": "equals", "value": "/systems/site-north"},
            {"path": "data.power", "op": "gt", "value": 1000},
        ],
        ordering_key="data.evseId",
        expire_after=300,
    )
    page = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    text = page.content.decode()
    assert "<code>source = &quot;/systems/site-north&quot;</code><br>and " in text
    assert "<code>data.power &gt; 1000</code>" in text
    listing = admin_client.get(CHANGELIST, {"priority__exact": "high"}).content.decode()
    assert "high priority · filter: 2 rule(s) · ordered by data.evseId · expires after 300 s" in (
        listing
    )


def test_the_delivery_list_filters_by_the_new_statuses(admin_client):
    page = admin_client.get("/admin/subscriptions/delivery/").content.decode()
    for status in (DeliveryStatus.EXPIRED, DeliveryStatus.SUPERSEDED):
        assert f"?status__exact={status.value}" in page
