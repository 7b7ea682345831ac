"""An operator's day in a real browser (issue 13), with a screenshot of every page it looks at
in test-artifacts/operators-day-*.png: a badly signed request shows on its source with the
reason; a failing subscription raises `subscription.failing`, which reaches the on-call
subscriber and the outbox; a backfill sends events that came before the subscription; the
payload search finds an event by a device id; and the pages read well on this Django version.

Debian's Chromium drives the admin that pytest-django's live_server serves; Celery runs eagerly
in the test settings, so a request to the hub has delivered what it causes before it answers.
Each part sets up its rows first and opens the browser after: the ORM stays outside the
browser block (tests/admin/browser.py says why).
"""

import json
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone
from standardwebhooks import Webhook

from receivers import refusals
from receivers.models import Event, Source
from receivers.tests.factories import DispatchedEventFactory, make_source
from receivers.tests.webhooks import gridx_body, sign
from subscriptions.services import alerts
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver
from tests.admin.browser import chromium_page, log_in, require_chromium, shot

pytestmark = pytest.mark.browser

OPERATOR, PASSWORD = "operator", "a-long-password-1"
ON_CALL = "on-call@example.com"
DEVICE = "fc0a-77d1-4c2e"


def look(page, base_url: str, path: str, name: str, ready: str = "#content") -> None:
    page.goto(f"{base_url}{path}")
    page.wait_for_selector(ready)
    shot(page, f"operators-day-{name}")


def post_to_hub(base_url: str, source: Source, body: bytes, secret: str) -> httpx.Response:
    """A gridX request as gridX sends it, signed with `secret`."""
    signed = sign(source, body, secret)
    headers = {"content-type": "application/json", **signed.headers}
    return httpx.post(f"{base_url}/hooks/{source.slug}/", content=body, headers=headers, timeout=30)


def a_badly_signed_request_shows_on_its_source(base_url: str, source: Source) -> None:
    answer = post_to_hub(base_url, source, gridx_body(id="evt-forged"), "whsec_not-the-one-0000")
    assert answer.status_code == 401 and "digest" not in answer.text  # the caller learns nothing
    refusals.flush()
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/receivers/source/")
        row = page.locator("#result_list tr", has_text=source.slug)
        assert "Verification failed" in row.inner_text()
        shot(page, "operators-day-sources")
        page.click(f"#result_list a:text-is('{source.slug}')")
        refused = page.locator(".hub-refusals").inner_text()
        assert "Verification failed" in refused and "no digest matches an active secret" in refused
        shot(page, "operators-day-refused-request")


def a_failing_subscription_raises_an_alert(
    base_url: str, source: Source, secret: str, failing: TestReceiver, on_call: TestReceiver
) -> None:
    billing = SubscriptionFactory(name="billing", url=failing.url)
    billing.sources.set([source])
    watcher = SubscriptionFactory(name="on-call", url=on_call.url, event_types=["subscription.*"])
    watcher.sources.set([alerts.hub_source()])
    for number in range(4):
        body = gridx_body(id=f"evt-plugged-{number}", type="ev/plugged")
        assert post_to_hub(base_url, source, body, secret).status_code == 200
    assert len(failing.requests) == 4
    (delivered,) = on_call.wait_for(1)
    alert = Webhook(watcher.secret).verify(delivered.body, delivered.headers)
    assert alert["type"] == "subscription.failing"
    assert alert["data"]["subscription"]["name"] == "billing"
    (message,) = [m for m in mail.outbox if m.subject.startswith("[hub] subscription.failing")]
    assert message.to == [ON_CALL] and "billing" in message.subject
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/dashboard/")
        row = page.locator("tr.hub-alert", has_text="subscription.failing")
        assert "billing" in row.inner_text()
        shot(page, "operators-day-dashboard-alert")
        row.locator("a:text-is('billing')").click()
        state = page.locator(".field-state .readonly").inner_text()
        assert state.startswith("failing since ") and "4 failures in a row" in state
        shot(page, "operators-day-failing-subscription")


def a_backfill_sends_what_came_before(base_url: str, source: Source, archive: TestReceiver):
    earlier = list(
        Event.objects.filter(source=source)
        .order_by("received_at", "pk")
        .values_list("external_id", flat=True)
    )
    analytics = SubscriptionFactory(name="analytics", url=archive.url)
    analytics.sources.set([source])
    since = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    with chromium_page() as page:
        path = f"/admin/subscriptions/subscription/{analytics.pk}/change/"
        log_in(page, base_url, OPERATOR, PASSWORD, path)
        page.click("text=Send events…")
        page.fill("#id_received_after", since)
        page.click("input[name=preview]")
        assert page.inner_text("#backfill-preview").startswith(f"{len(earlier)} events match")
        shot(page, "operators-day-backfill-preview")
        page.click("input[name=confirm]")
        started = page.locator(".messagelist .success").inner_text()
        assert f"Backfill of {len(earlier)} events to analytics started" in started
        shot(page, "operators-day-backfill-progress")
    sent = [json.loads(request.body)["id"] for request in archive.wait_for(len(earlier))]
    assert sent == earlier  # every one, in the order the hub received them


def search_events(page, text: str) -> list[str]:
    """Type into the event list's search box; the event ids the page then lists."""
    page.fill("#searchbar", text)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    cells = page.locator("#result_list td.field-external_id")
    return [cells.nth(i).inner_text().strip() for i in range(cells.count())]


def the_payload_search_finds_a_device(base_url: str) -> None:
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/receivers/event/")
        assert sorted(search_events(page, f"data.applianceID={DEVICE}")) == [
            "evt-device-0",
            "evt-device-2",
        ]
        assert "data.applianceID=fc0a…" in page.inner_text("#searchbar_helptext")
        shot(page, "operators-day-payload-search")
        assert search_events(page, f"data.applianceID={DEVICE} data.n=2") == ["evt-device-2"]
        assert search_events(page, "evt-device-1") == ["evt-device-1"]  # an event id, as before
        assert search_events(page, "data..applianceID=x") == []
        error = page.locator(".messagelist .error").inner_text()
        assert "Cannot read the path 'data..applianceID'" in error
        shot(page, "operators-day-payload-search-bad-syntax")


def the_pages_read_well(base_url: str) -> None:
    """Breadcrumbs as a trail on this Django version too, "View site", the confirmation page."""
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/")
        look(page, base_url, "/admin/", "index")
        page.click("text=View site")
        page.wait_for_url("**/admin/dashboard/")
        crumb = page.locator("ol.breadcrumbs li").first
        display = crumb.evaluate("li => getComputedStyle(li).display")
        assert display == "inline-block"  # not a numbered list item
        assert crumb.evaluate("li => getComputedStyle(li, '::after').content") != "none"
        shot(page, "operators-day-dashboard")
        page.goto(f"{base_url}/admin/subscriptions/subscription/")
        page.click("#result_list a:text-is('analytics')")
        page.click("#rotate-signing-secret")
        page.wait_for_selector("input[name=grace_hours]")
        assert page.locator("ol.breadcrumbs li").last.inner_text() == "Rotate signing secret"
        shot(page, "operators-day-rotate-signing-secret")


def test_an_operators_day(live_server, receiver, settings):
    require_chromium()
    settings.HUB_ALERT_EMAILS = [ON_CALL]
    User.objects.create_superuser(OPERATOR, password=PASSWORD)
    source, (secret,) = make_source(slug="gridx-home")
    for number, device in enumerate((DEVICE, "b7d2-0001", DEVICE)):
        DispatchedEventFactory(
            source=source,
            external_id=f"evt-device-{number}",
            payload={"id": f"evt-device-{number}", "data": {"applianceID": device, "n": number}},
            received_at=timezone.now() - timedelta(minutes=10 - number),
        )
    receiver.default = Answer(status=500)  # billing's target is down all day
    with TestReceiver() as on_call, TestReceiver() as archive:
        a_badly_signed_request_shows_on_its_source(live_server.url, source)
        a_failing_subscription_raises_an_alert(live_server.url, source, secret, receiver, on_call)
        a_backfill_sends_what_came_before(live_server.url, source, archive)
    the_payload_search_finds_a_device(live_server.url)
    the_pages_read_well(live_server.url)
