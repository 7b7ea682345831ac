"""The operator's console in the admin: open alerts on the dashboard, accepted next to refused
per source, the alert list, the hub's own source read-only, and "Send events…" (backfill)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from receivers.models import RefusalMinute
from receivers.tests.factories import DispatchedEventFactory, EventFactory, make_source
from subscriptions.models import AlertKind, Backfill, BackfillState, Delivery
from subscriptions.services import alerts
from subscriptions.tests.factories import SubscriptionFactory
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"


def test_open_alerts_are_at_the_top_of_the_dashboard(admin_client):
    sub = SubscriptionFactory(name="billing")
    alerts.subscription_disabled(sub.pk, "The target answered 410 Gone.")
    cleared = alerts.raise_alert(AlertKind.BACKLOG_HIGH, "hub", "Old news.", {})
    alerts.clear(cleared.kind, cleared.key)
    html = admin_client.get(DASHBOARD).content.decode()
    assert "billing was disabled: The target answered 410 Gone." in html
    assert "Old news." not in html
    assert html.index('id="alerts"') < html.index('id="traffic"')


def test_no_alert_says_so(admin_client):
    assert "every subscription delivers" in admin_client.get(DASHBOARD).content.decode()


def test_the_dashboard_shows_refused_next_to_accepted_per_source(admin_client):
    gridx, _ = make_source("gridx", slug="gridx-prod")
    quiet, _ = make_source("edrv", slug="edrv-quiet", expected_interval=timedelta(minutes=10))
    now = timezone.now()
    for _ in range(3):
        DispatchedEventFactory(source=gridx)
    DispatchedEventFactory(source=quiet, received_at=now - timedelta(hours=2))
    minute = now.replace(second=0, microsecond=0)
    RefusalMinute.objects.create(source=gridx, minute=minute, refused=7, stored=7)
    RefusalMinute.objects.create(source=None, minute=minute, refused=4, stored=4)
    RefusalMinute.objects.create(source=gridx, minute=minute - timedelta(days=2), refused=50)

    rows = {
        (row.source.slug if row.source else None): row
        for row in admin_client.get(DASHBOARD).context["sources"]
    }
    assert (rows["gridx-prod"].accepted, rows["gridx-prod"].refused) == (3, 7)
    assert rows[None].refused == 4
    assert rows["edrv-quiet"].silent_since is not None
    assert "eDRV disables a webhook" in rows["edrv-quiet"].note


def test_the_alert_list_shows_open_ones_first(admin_client):
    sub = SubscriptionFactory(name="billing")
    old = alerts.raise_alert(AlertKind.BACKLOG_HIGH, "hub", "Cleared one.", {})
    alerts.clear(old.kind, old.key)
    alerts.subscription_disabled(sub.pk, "stopped")
    page = admin_client.get("/admin/subscriptions/alert/")
    shown = [a.message for a in page.context["cl"].result_list]
    assert shown == ["billing was disabled: stopped", "Cleared one."]
    only_open = admin_client.get("/admin/subscriptions/alert/", {"open": "yes"})
    assert [a.kind for a in only_open.context["cl"].result_list] == ["subscription.disabled"]


def test_the_hubs_own_source_is_read_only_in_the_admin(admin_client):
    source = alerts.hub_source()
    page = admin_client.get(reverse("admin:receivers_source_change", args=[source.pk]))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert "refuses every request" in admin_client.get("/admin/receivers/source/").content.decode()
    assert admin_client.get(f"/admin/receivers/source/{source.pk}/delete/").status_code == 403
    rotate = admin_client.get(f"/admin/receivers/source/{source.pk}/rotate-secret/")
    assert rotate.status_code == 403
    add = admin_client.get("/admin/receivers/source/add/")
    assert "hub" not in [
        value for value, _ in add.context["adminform"].form["provider"].field.choices
    ]


# --- backfill ---------------------------------------------------------------------------------


@pytest.fixture
def old_events():
    source, _ = make_source("gridx", slug="gridx-prod")
    start = timezone.now() - timedelta(hours=5)
    return [
        EventFactory(source=source, type=kind, received_at=start + timedelta(minutes=n))
        for n, kind in enumerate(["appliance/online", "ev/plugged", "appliance/offline"])
    ]


def backfill_form(**fields) -> dict:
    since = timezone.now() - timedelta(hours=6)
    return {"received_after": since.strftime("%Y-%m-%d %H:%M:%S"), **fields}


def test_send_events_previews_the_count_then_starts_and_shows_progress(
    admin_client, old_events, receiver, django_capture_on_commit_callbacks
):
    sub = SubscriptionFactory(url=receiver.url, name="billing")
    change = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    url = reverse("admin:subscriptions_subscription_backfill", args=[sub.pk])
    assert f'href="{url}"' in change.content.decode()

    preview = admin_client.post(url, {**backfill_form(event_types="appliance/*"), "preview": "1"})
    assert preview.status_code == 200
    assert "2 events match." in preview.content.decode()
    assert 'value="Send 2 events"' in preview.content.decode()
    assert not Backfill.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        sent = admin_client.post(
            url, {**backfill_form(event_types="appliance/*"), "confirm": "1"}, follow=True
        )
    job = Backfill.objects.get()
    assert sent.redirect_chain[-1][0] == reverse(
        "admin:subscriptions_backfill_change", args=[job.pk]
    )
    assert any("Backfill of 2 events to billing started" in m for m in messages_of(sent))
    job.refresh_from_db()
    assert (job.state, job.examined, job.total, job.created_by) == (
        BackfillState.DONE,
        2,
        2,
        "admin",
    )
    progress = admin_client.get(reverse("admin:subscriptions_backfill_change", args=[job.pk]))
    assert "2 of 2 events looked at (100%)" in progress.content.decode()
    receiver.wait_for(2)
    assert Delivery.objects.filter(subscription=sub).count() == 2


def test_a_bad_range_is_refused_with_a_message(admin_client, old_events):
    sub = SubscriptionFactory()
    url = reverse("admin:subscriptions_subscription_backfill", args=[sub.pk])
    later = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    answer = admin_client.post(url, {"received_after": later, "preview": "1"})
    assert answer.status_code == 200
    assert "The start must come before the end." in answer.content.decode()
    nonsense = admin_client.post(url, {"received_after": "last tuesday", "preview": "1"})
    assert nonsense.context["form"].errors["received_after"]


def test_the_list_action_leads_to_the_form_for_one_subscription(admin_client):
    one, two = SubscriptionFactory(), SubscriptionFactory()
    changelist = "/admin/subscriptions/subscription/"
    answer = admin_client.post(
        changelist, {"action": "send_stored_events", "_selected_action": [one.pk]}
    )
    assert answer.status_code == 302
    assert answer["Location"] == reverse("admin:subscriptions_subscription_backfill", args=[one.pk])
    both = admin_client.post(
        changelist,
        {"action": "send_stored_events", "_selected_action": [one.pk, two.pk]},
        follow=True,
    )
    assert "Choose one subscription to send events to." in messages_of(both)


def test_backfill_needs_its_permission(client):
    sub = SubscriptionFactory()
    url = reverse("admin:subscriptions_subscription_backfill", args=[sub.pk])
    client.force_login(StaffUserFactory(permissions=["subscriptions.change_subscription"]))
    assert client.get(url).status_code == 403
    page = client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    assert url not in page.content.decode()
    client.force_login(StaffUserFactory(permissions=["subscriptions.add_backfill"]))
    assert client.get(url).status_code == 200
