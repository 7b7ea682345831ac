"""An operator's day in a real browser (issue 13), with a screenshot of every page it looks at
in test-artifacts/operators-day-*.png.

Debian's Chromium drives the admin that pytest-django's live_server serves; Celery runs eagerly
in the test settings. Each part sets up its rows first and opens the browser after: the ORM
stays outside the browser block (tests/admin/browser.py says why).
"""

import pytest
from django.contrib.auth.models import User

from receivers.tests.factories import DispatchedEventFactory, make_source
from subscriptions.tests.factories import SubscriptionFactory
from tests.admin.browser import chromium_page, log_in, require_chromium, shot

pytestmark = pytest.mark.browser

OPERATOR, PASSWORD = "operator", "a-long-password-1"
DEVICE = "fc0a-77d1-4c2e"


def look(page, base_url: str, path: str, name: str, ready: str = "#content") -> None:
    page.goto(f"{base_url}{path}")
    page.wait_for_selector(ready)
    shot(page, f"operators-day-{name}")


def search_events(page, text: str) -> list[str]:
    """Type into the event list's search box; the event ids the page then lists."""
    page.fill("#searchbar", text)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    cells = page.locator("#result_list td.field-external_id")
    return [cells.nth(i).inner_text().strip() for i in range(cells.count())]


def find_a_device_in_the_payloads(base_url: str) -> None:
    source = make_source(slug="gridx-home")[0]
    for number, device in enumerate((DEVICE, "b7d2-0001", DEVICE, "c3e4-0002")):
        DispatchedEventFactory(
            source=source,
            external_id=f"evt-day-{number}",
            payload={"id": f"evt-day-{number}", "data": {"applianceID": device, "n": number}},
        )
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/receivers/event/")
        assert sorted(search_events(page, f"data.applianceID={DEVICE}")) == [
            "evt-day-0",
            "evt-day-2",
        ]
        assert "data.applianceID=fc0a…" in page.inner_text("#searchbar_helptext")
        shot(page, "operators-day-payload-search")
        assert search_events(page, f"data.applianceID={DEVICE} data.n=2") == ["evt-day-2"]
        assert search_events(page, "evt-day-1") == ["evt-day-1"]  # an event id, as before
        assert search_events(page, "data..applianceID=x") == []
        error = page.locator(".messagelist .error").inner_text()
        assert "Cannot read the path 'data..applianceID'" in error
        shot(page, "operators-day-payload-search-bad-syntax")


def the_pages_read_well(base_url: str) -> None:
    """Breadcrumbs as a trail on this Django version too, names and plain words."""
    sub = SubscriptionFactory(name="billing")
    with chromium_page() as page:
        log_in(page, base_url, OPERATOR, PASSWORD, "/admin/")
        look(page, base_url, "/admin/", "index")
        page.click("text=View site")
        page.wait_for_url("**/admin/dashboard/")
        crumbs = page.locator("ol.breadcrumbs li")
        styles = crumbs.first.evaluate(
            "li => [getComputedStyle(li).display, getComputedStyle(li).listStyleType]"
        )
        assert styles[0] == "inline-block", styles
        assert crumbs.first.evaluate("li => getComputedStyle(li, '::after').content") != "none"
        shot(page, "operators-day-dashboard")
        look(page, base_url, f"/admin/subscriptions/subscription/{sub.pk}/change/", "subscription")
        page.click("#rotate-signing-secret")
        page.wait_for_selector("input[name=grace_hours]")
        assert page.locator("ol.breadcrumbs li").last.inner_text() == "Rotate signing secret"
        shot(page, "operators-day-rotate-signing-secret")


def test_an_operators_day(live_server, receiver):
    require_chromium()
    User.objects.create_superuser(OPERATOR, password=PASSWORD)
    find_a_device_in_the_payloads(live_server.url)
    the_pages_read_well(live_server.url)
