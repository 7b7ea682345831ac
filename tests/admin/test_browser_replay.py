"""In a real browser: log in, open a failed delivery, replay it, see the message and the attempt.

Debian's Chromium drives the admin served by pytest-django's live_server; Celery runs eagerly in
the test settings, so the replay really posts to a local receiver before the page comes back.
"""

import pytest
from django.contrib.auth.models import User

from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.models import Attempt, DeliveryStatus
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from tests.admin.browser import chromium_page, log_in, require_chromium, shot

pytestmark = pytest.mark.browser


def test_replay_a_failed_delivery_in_the_browser(live_server, receiver):
    require_chromium()
    User.objects.create_superuser("operator", password="a-long-password-1")
    source = make_source(slug="gridx-prod")[0]
    event = DispatchedEventFactory(
        source=source,
        payload={"id": "evt-browser-1", "type": "appliance/online", "data": {"power": 7.4}},
        external_id="evt-browser-1",
    )
    subscription = SubscriptionFactory(url=receiver.url, name="billing")
    delivery = DeliveryFactory(
        event=event, subscription=subscription, status=DeliveryStatus.FAILED, attempts=(500,)
    )

    with chromium_page() as page:
        log_in(
            page, live_server.url, "operator", "a-long-password-1", "/admin/subscriptions/delivery/"
        )
        page.click("#changelist-filter a:text-is('Failed')")  # the status filter
        page.wait_for_url("**status__exact=failed**")
        shot(page, "deliveries-failed")

        page.click(f"#result_list a[href*='/delivery/{delivery.pk}/change/']")
        page.wait_for_selector("#replay-delivery")
        assert page.locator("#attempts-group td.field-status_code").count() == 1
        shot(page, "delivery-before-replay")

        page.click("#replay-delivery")
        success = page.locator(".messagelist .success")
        success.wait_for()
        assert success.inner_text().strip() == "Queued 1 delivery for replay."
        codes = page.locator("#attempts-group td.field-status_code")
        assert [codes.nth(i).inner_text().strip() for i in range(codes.count())] == ["500", "200"]
        replayed = page.locator("#attempts-group td.field-is_replay img")
        assert replayed.nth(1).get_attribute("alt") == "True"
        shot(page, "delivery-after-replay")

        # The other pages, for a look at the screenshots.
        for name, path, ready in (
            ("events", "/admin/receivers/event/", "#result_list"),
            ("event-detail", f"/admin/receivers/event/{event.pk}/change/", "#deliveries"),
            ("dashboard", "/admin/dashboard/", "svg.hub-chart"),
            ("sources", "/admin/receivers/source/", "#result_list"),
            ("subscription", f"/admin/subscriptions/subscription/{subscription.pk}/change/", "h1"),
        ):
            page.goto(f"{live_server.url}{path}")
            page.wait_for_selector(ready)
            shot(page, name)

    statuses = Attempt.objects.filter(delivery=delivery).order_by("pk")
    assert [(a.status_code, a.is_replay) for a in statuses] == [(500, False), (200, True)]
    assert len(receiver.requests) == 1
