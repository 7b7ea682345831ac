"""Issue 13's admin polish, page by page: times, the deliveries list's columns, links and titles,
the subscription form's fields, the signing-secret confirmation, breadcrumbs, the index order,
"View site", and plain wording for paused, failing and not-relayed. Run on Django 5.2 and 6.1."""

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions import work
from subscriptions.admin import replays
from subscriptions.models import DeliveryStatus, Subscription
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

AT = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)
SUBSCRIPTIONS = "/admin/subscriptions/subscription/"
DELIVERIES = "/admin/subscriptions/delivery/"
EVENTS = "/admin/receivers/event/"


def change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def page_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def text_of(html: str) -> str:
    """The page's words, tags removed and spaces joined: what a reader sees."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def drains(monkeypatch):
    monkeypatch.setattr(work, "request_drains", lambda ids: None)


# Times


def test_lists_show_times_with_seconds_and_the_time_zone(admin_client, source):
    event = DispatchedEventFactory(source=source, received_at=AT)
    sub = SubscriptionFactory(name="billing")
    DeliveryFactory(event=event, subscription=sub, created_at=AT + timedelta(seconds=1))
    assert "2026-03-02 08:15:30 UTC" in text_of(page_of(admin_client, EVENTS))
    assert "2026-03-02 08:15:31 UTC" in text_of(page_of(admin_client, DELIVERIES))
    assert "2026-03-02 08:15:30 UTC" in text_of(page_of(admin_client, change_url(event)))


# The deliveries list


def test_deliveries_list_shows_next_attempt_last_status_and_last_error(admin_client, source):
    sub = SubscriptionFactory(name="billing")
    DeliveryFactory(
        event=DispatchedEventFactory(source=source),
        subscription=sub,
        status=DeliveryStatus.RETRYING,
        attempts=(503,),
        next_attempt_at=AT,
        last_error="HTTP 503: upstream is restarting",
    )
    DeliveryFactory(
        event=DispatchedEventFactory(source=source),
        subscription=sub,
        status=DeliveryStatus.SUCCEEDED,
        attempts=(200,),
        next_attempt_at=AT - timedelta(days=1),
    )
    page = page_of(admin_client, DELIVERIES)
    for header in ("next attempt", "last status", "last error"):
        assert f">{header.capitalize()}<" in page or f">{header}<" in page.lower(), header
    words = text_of(page)
    assert "2026-03-02 08:15:30 UTC HTTP 503 HTTP 503: upstream is restarting" in words
    assert "2026-03-01 08:15:30 UTC" not in words  # a finished delivery has no next attempt
    assert "HTTP 200" in words


def test_a_long_last_error_is_cut_in_the_list(admin_client, source):
    DeliveryFactory(event=DispatchedEventFactory(source=source), last_error="x" * 400)
    words = text_of(page_of(admin_client, DELIVERIES))
    assert "x" * 79 + "…" in words and "x" * 81 not in words


# Links and titles


def test_a_subscription_page_links_to_its_deliveries(admin_client, source):
    sub = SubscriptionFactory(name="billing")
    other = SubscriptionFactory(name="crm")
    mine = DeliveryFactory(event=DispatchedEventFactory(source=source), subscription=sub)
    DeliveryFactory(event=DispatchedEventFactory(source=source), subscription=other)
    page = page_of(admin_client, change_url(sub))
    link = re.search(r'<a href="([^"]+)" id="subscription-deliveries">Deliveries</a>', page)
    assert link is not None
    response = admin_client.get(link.group(1).replace("&amp;", "&"))
    assert [d.pk for d in response.context["cl"].result_list] == [mine.pk]


def test_titles_name_the_subscription_and_the_source_not_their_ids(admin_client, source):
    sub = SubscriptionFactory(name="billing")
    event = DispatchedEventFactory(source=source, external_id="evt-42", type="appliance/online")
    delivery = DeliveryFactory(event=event, subscription=sub, webhook_id="msg_title")
    page = page_of(admin_client, change_url(delivery))
    assert "<h2>msg_title to billing</h2>" in page
    assert '<li aria-current="page">msg_title to billing</li>' in page or (
        "msg_title to billing\n</div>" in page
    )
    assert f"to {sub.pk}<" not in page
    event_page = page_of(admin_client, change_url(event))
    assert "<h2>gridx-prod · appliance/online · evt-42</h2>" in event_page


def test_replays_are_logged_by_name_without_a_query_per_delivery(
    source, django_assert_max_num_queries
):
    sub = SubscriptionFactory(name="billing")
    ids = [
        DeliveryFactory(
            event=DispatchedEventFactory(source=source), subscription=sub, webhook_id=webhook_id
        ).pk
        for webhook_id in ("msg_a", "msg_b", "msg_c")
    ]
    request = SimpleNamespace(user=StaffUserFactory(is_superuser=True))
    with django_assert_max_num_queries(4):
        replays.log_replays(request, ids)
    assert set(LogEntry.objects.values_list("object_repr", flat=True)) == {
        "msg_a to billing",
        "msg_b to billing",
        "msg_c to billing",
    }


# The subscription form


def add_subscription(client, **fields):
    data = {
        "name": "billing",
        "url": "http://127.0.0.1:9/hook",
        "event_types": "appliance/*, ev/charge-started",
        "payload_format": "original",
        "timeout_seconds": "15",
        "headers_name": ["Authorization", "X-Tenant", ""],
        "headers_value": ["Bearer abc", "north", ""],
        **fields,
    }
    return client.post(f"{SUBSCRIPTIONS}add/", data)


def test_event_types_are_a_comma_separated_line_and_headers_name_value_rows(admin_client):
    response = add_subscription(admin_client)
    assert response.status_code == 302, response.content.decode()[:2000]
    sub = Subscription.objects.get()
    assert sub.event_types == ["appliance/*", "ev/charge-started"]
    assert sub.headers == {"Authorization": "Bearer abc", "X-Tenant": "north"}
    page = page_of(admin_client, change_url(sub))
    assert 'name="event_types" value="appliance/*, ev/charge-started"' in page
    assert 'name="headers_name" value="X-Tenant"' in page
    # Values are shown masked, as secrets are (they are often a subscriber's credentials).
    assert 'name="headers_value" value="****"' in page and 'value="north"' not in page
    assert page.count('name="headers_name"') == 4  # the two, and two empty rows to add more


def test_editing_a_row_away_removes_the_header(admin_client):
    add_subscription(admin_client)
    sub = Subscription.objects.get()
    data = {
        "name": "billing",
        "url": sub.url,
        "event_types": "*",
        "payload_format": "original",
        "timeout_seconds": "15",
        "headers_name": ["", "X-Tenant"],
        "headers_value": ["Bearer abc", "south"],
    }
    assert admin_client.post(change_url(sub), data).status_code == 302
    sub.refresh_from_db()
    assert (sub.event_types, sub.headers) == (["*"], {"X-Tenant": "south"})


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"event_types": ""}, "Name at least one event type"),
        ({"event_types": "appliance/*, ev charge"}, "is not an event type"),
        ({"event_types": '["appliance/*", 3]'}, "Separate event types with commas"),
        ({"headers_name": ["Bad Name"], "headers_value": ["x"]}, "is not a header name"),
        ({"headers_name": ["webhook-signature"], "headers_value": ["x"]}, "sets webhook-signature"),
        ({"headers_name": ["X-A", "x-a"], "headers_value": ["1", "2"]}, "named twice"),
        ({"headers_name": ["X-A"], "headers_value": ["one\r\nX-B: two"]}, "one line"),
    ],
)
def test_the_form_explains_what_it_refuses(admin_client, fields, says):
    response = add_subscription(admin_client, **fields)
    assert response.status_code == 200
    assert says in response.content.decode()
    assert not Subscription.objects.exists()


# Rotating the signing secret


def test_rotating_the_signing_secret_asks_first(admin_client):
    sub = SubscriptionFactory(name="billing")
    old = sub.secret
    confirm = reverse("admin:subscriptions_subscription_rotate_secret", args=[sub.pk])
    assert f'href="{confirm}" id="rotate-signing-secret"' in page_of(admin_client, change_url(sub))
    page = page_of(admin_client, confirm)
    assert "Rotate the signing secret of billing" in page
    assert sub.masked_secret in page and old not in page
    sub.refresh_from_db()
    assert sub.secret == old  # looking at the page changes nothing

    response = admin_client.post(confirm, {"grace_hours": "48"}, follow=True)
    sub.refresh_from_db()
    assert sub.secret != old and sub.previous_secret == old
    expected = timezone.now() + timedelta(hours=48)
    assert abs((sub.previous_secret_expires_at - expected).total_seconds()) < 60
    (message,) = messages_of(response)
    assert sub.secret in message and "also signs for 48 hours" in message


def test_the_confirmation_refuses_a_bad_grace_and_a_viewer(client, admin_client):
    sub = SubscriptionFactory(name="billing")
    old = sub.secret
    confirm = reverse("admin:subscriptions_subscription_rotate_secret", args=[sub.pk])
    response = admin_client.post(confirm, {"grace_hours": "-1"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    client.force_login(StaffUserFactory(permissions=["subscriptions.view_subscription"]))
    assert client.get(confirm).status_code == 403
    assert client.post(confirm, {"grace_hours": "1"}).status_code == 403
    sub.refresh_from_db()
    assert sub.secret == old


# Breadcrumbs, the index, "View site"


@pytest.mark.parametrize(
    "page", ["dashboard", "source rotate", "subscription rotate", "subscription backfill"]
)
def test_breadcrumbs_are_a_styled_trail_not_a_numbered_list(admin_client, source, page):
    sub = SubscriptionFactory(name="billing")
    url = {
        "dashboard": reverse("hub-dashboard"),
        "source rotate": reverse("admin:receivers_source_rotate_secret", args=[source.pk]),
        "subscription rotate": reverse(
            "admin:subscriptions_subscription_rotate_secret", args=[sub.pk]
        ),
        "subscription backfill": reverse(
            "admin:subscriptions_subscription_backfill", args=[sub.pk]
        ),
    }[page]
    html = page_of(admin_client, url)
    trail = re.search(r'<ol class="breadcrumbs">(.*?)</ol>', html, re.S)
    assert trail is not None
    items = re.findall(r"<li[^>]*>(.*?)</li>", trail.group(1), re.S)
    assert text_of(items[0]).strip() == "Home" and len(items) >= 2
    assert 'aria-current="page"' in trail.group(1)
    # Django 5.2's stylesheet has no rule for a list of breadcrumbs: the hub's page brings it.
    assert "ol.breadcrumbs li { display: inline-block; list-style: none;" in html


def test_the_index_lists_receiving_relaying_then_users_and_tokens(admin_client):
    response = admin_client.get("/admin/")
    labels = [app["app_label"] for app in response.context["app_list"]]
    assert labels[:2] == ["receivers", "subscriptions"]
    assert labels.index("auth") > 1 and labels.index("knox") > labels.index("auth")
    captions = re.findall(r"<caption>\s*<a [^>]*>(.*?)</a>", response.content.decode(), re.S)
    assert captions[:2] == ["Receiving", "Relaying"]
    assert captions.index("Authentication and Authorization") > 1


def test_view_site_leads_to_the_dashboard(admin_client):
    html = page_of(admin_client, "/admin/")
    link = re.search(r'<a href="([^"]+)">View site</a>', html)
    assert link is not None and link.group(1) == reverse("hub-dashboard")
    assert admin_client.get(link.group(1)).status_code == 200


# Plain wording


def test_paused_reads_who_paused_it_and_when(admin_client, drains):
    sub = SubscriptionFactory(name="billing")
    admin_client.post(reverse("admin:subscriptions_subscription_operation", args=[sub.pk, "pause"]))
    sub.refresh_from_db()
    when = timezone.localtime(sub.disabled_at).strftime("%Y-%m-%d %H:%M:%S")
    expected = f"Paused by admin on {when} UTC; deliveries wait"
    assert expected in text_of(page_of(admin_client, change_url(sub)))
    assert expected in text_of(page_of(admin_client, SUBSCRIPTIONS))
    assert expected in text_of(page_of(admin_client, reverse("hub-dashboard")))
    page = page_of(admin_client, change_url(sub))
    assert "Disabled reason" not in page and "in the admin" not in page


def test_failing_reads_sensibly_in_its_first_minute(admin_client):
    now = timezone.now()
    SubscriptionFactory(name="billing", consecutive_failures=1, failing_since=now)
    SubscriptionFactory(
        name="crm", consecutive_failures=4, failing_since=now - timedelta(hours=3, minutes=5)
    )
    for url in (SUBSCRIPTIONS, reverse("hub-dashboard")):
        words = text_of(page_of(admin_client, url))
        assert "0 minutes" not in words
        assert "(under a minute, 1 failure in a row)" in words
        assert "(3 hours, 5 minutes, 4 failures in a row)" in words


def test_disabled_reads_when_and_why(admin_client):
    SubscriptionFactory(
        name="billing",
        is_active=False,
        disabled_at=AT,
        disabled_reason="The target answered 410 Gone.",
    )
    words = text_of(page_of(admin_client, SUBSCRIPTIONS))
    assert "disabled on 2026-03-02 08:15:30 UTC: The target answered 410 Gone." in words


def test_not_relayed_says_which(admin_client):
    source = make_source(slug="gridx-lab")[0]
    ping = DispatchedEventFactory(source=source, type="ping", is_test=True, status="ignored")
    lonely = DispatchedEventFactory(source=source, status="ignored")
    listing = text_of(page_of(admin_client, EVENTS))
    assert "Not relayed: a test event" in listing
    assert "Not relayed: no subscription matched" in listing
    assert "test event or no subscriber" not in listing
    assert "Not relayed: a test event" in text_of(page_of(admin_client, change_url(ping)))
    assert "Not relayed: no subscription matched" in text_of(
        page_of(admin_client, change_url(lonely))
    )


def test_just_now_reads_under_a_minute_ago_everywhere(admin_client, source):
    DispatchedEventFactory(source=source)
    for url in ("/admin/receivers/source/", change_url(source), reverse("hub-dashboard")):
        words = text_of(page_of(admin_client, url))
        assert "under a minute ago" in words, url
        assert "0 minutes" not in words, url
