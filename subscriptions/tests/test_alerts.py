"""Alerts: one per condition until it clears, stored as events of the hub's own source and
relayed to the subscriptions that choose it, mailed and posted to Slack once."""

import json
import logging
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from receivers.models import Event, RefusalMinute, Source
from receivers.tests.factories import EventFactory, make_source
from subscriptions.models import Alert, AlertKind, Delivery, DeliveryStatus
from subscriptions.services import alerts, controls, drain, fanout, notify, sweep, watch
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver

pytestmark = pytest.mark.django_db


def deliver(*events, sub):
    fanout.fan_out([event.pk for event in events])
    drain.drain_subscription(sub.pk)


def open_alerts(kind: str | None = None) -> list[Alert]:
    found = Alert.objects.filter(cleared_at=None)
    return list(found.filter(kind=kind) if kind else found)


def alert_events(kind: str) -> list[Event]:
    return list(Event.objects.filter(source=alerts.hub_source(), type=kind))


@pytest.fixture
def failing(receiver):
    receiver.default = Answer(status=500)
    return SubscriptionFactory(url=receiver.url, name="billing")


def test_four_failed_attempts_in_a_row_raise_one_failing_alert(failing):
    deliver(*[EventFactory() for _ in range(3)], sub=failing)
    assert open_alerts() == []
    deliver(EventFactory(), sub=failing)
    (alert,) = open_alerts(AlertKind.SUBSCRIPTION_FAILING)
    assert alert.subscription == failing and "billing: 4 failed attempts in a row" in alert.message
    # No storm: more failures keep the one alert.
    Delivery.objects.update(next_attempt_at=timezone.now())
    deliver(*[EventFactory() for _ in range(5)], sub=failing)
    assert len(open_alerts(AlertKind.SUBSCRIPTION_FAILING)) == 1
    (event,) = alert_events(AlertKind.SUBSCRIPTION_FAILING)
    assert event.payload["data"]["subscription"]["name"] == "billing"
    assert event.payload["id"] == f"alert_{alert.pk}" and alert.event == event


def test_a_success_clears_the_alert_and_says_recovered(failing, receiver):
    deliver(*[EventFactory() for _ in range(4)], sub=failing)
    receiver.default = Answer(status=200)
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain.drain_subscription(failing.pk)
    assert open_alerts() == []
    recovered = Alert.objects.get(kind=AlertKind.SUBSCRIPTION_RECOVERED)
    assert recovered.cleared_at == recovered.opened_at  # a notice, not a condition
    assert "billing delivers again, after 4 failed attempts" in recovered.message
    assert len(alert_events(AlertKind.SUBSCRIPTION_RECOVERED)) == 1


def test_alert_events_reach_only_the_subscriptions_that_choose_the_hub(
    failing, django_capture_on_commit_callbacks
):
    with TestReceiver() as operator, TestReceiver() as everything:
        watcher = SubscriptionFactory(url=operator.url, event_types=["subscription.*"])
        watcher.sources.set([alerts.hub_source()])
        SubscriptionFactory(url=everything.url, event_types=["*"])
        with django_capture_on_commit_callbacks(execute=True):
            deliver(*[EventFactory() for _ in range(4)], sub=failing)
        (got,) = operator.wait_for(1)
        body = Webhook(watcher.secret).verify(got.body, got.headers)
        assert body["type"] == "subscription.failing"
        assert body["data"]["subscription"]["id"] == failing.pk
        assert got.headers["x-hub-source"] == alerts.hub_source().slug
        # The "*" subscription took the four events from its platforms, not the alert.
        types = {json.loads(r.body)["type"] for r in everything.requests}
        assert "subscription.failing" not in types


def test_a_410_raises_disabled_and_resuming_clears_it(receiver):
    receiver.default = Answer(status=410)
    sub = SubscriptionFactory(url=receiver.url, name="gone")
    deliver(EventFactory(), sub=sub)
    (alert,) = open_alerts(AlertKind.SUBSCRIPTION_DISABLED)
    assert "gone was disabled: The target answered 410 Gone." == alert.message
    controls.resume(type(sub).objects.filter(pk=sub.pk))
    assert open_alerts(AlertKind.SUBSCRIPTION_DISABLED) == []


def test_a_delivery_that_fails_for_good_raises_exhausted_once(receiver):
    receiver.default = Answer(status=400)
    sub = SubscriptionFactory(url=receiver.url, name="strict")
    deliver(EventFactory(), EventFactory(), sub=sub)
    assert Delivery.objects.filter(status=DeliveryStatus.FAILED).count() == 2
    (alert,) = open_alerts(AlertKind.DELIVERY_EXHAUSTED)
    assert alert.subscription == sub
    deliver(EventFactory(), sub=sub)
    assert len(open_alerts(AlertKind.DELIVERY_EXHAUSTED)) == 1


def refused(source, count: int, minutes_ago: int = 1) -> None:
    minute = (timezone.now() - timedelta(minutes=minutes_ago)).replace(second=0, microsecond=0)
    RefusalMinute.objects.create(source=source, minute=minute, refused=count, stored=count)


def test_a_source_refused_too_often_raises_rejecting_until_it_calms_down(settings):
    settings.HUB_ALERT_REFUSALS, settings.HUB_ALERT_REFUSALS_MINUTES = 20, 10
    noisy, _ = make_source("gridx", slug="noisy")
    calm, _ = make_source("gridx", slug="calm")
    refused(noisy, 15)
    refused(noisy, 10, minutes_ago=3)
    refused(noisy, 50, minutes_ago=30)  # outside the window
    refused(calm, 20)
    assert watch.watch(timezone.now()) == 1
    (alert,) = open_alerts(AlertKind.SOURCE_REJECTING)
    assert alert.source == noisy and "noisy: 25 requests refused in 10 minutes" in alert.message
    assert watch.watch(timezone.now()) == 0  # still open, not raised again
    RefusalMinute.objects.filter(source=noisy).delete()
    watch.watch(timezone.now())
    assert open_alerts() == []


def test_a_silent_source_raises_silent_with_its_platforms_note():
    now = timezone.now()
    quiet, _ = make_source("edrv", slug="edrv-quiet", expected_interval=timedelta(minutes=30))
    EventFactory(source=quiet, received_at=now - timedelta(hours=2))
    never, _ = make_source("gridx", slug="gridx-new", expected_interval=timedelta(hours=1))
    make_source("gridx", slug="unwatched")
    sweep.sweep(now)
    (alert,) = open_alerts(AlertKind.SOURCE_SILENT)
    assert alert.source == quiet
    assert "eDRV disables a webhook after repeated failures" in alert.message
    (event,) = alert_events(AlertKind.SOURCE_SILENT)
    assert event.payload["data"]["expected_interval_seconds"] == 1800
    # An event clears it; a source that never sent anything is silent once its interval passed.
    EventFactory(source=quiet)
    Source.objects.filter(pk=never.pk).update(created_at=now - timedelta(hours=2))
    sweep.sweep()
    assert [a.source for a in open_alerts(AlertKind.SOURCE_SILENT)] == [never]


def test_a_high_backlog_raises_one_alert_until_it_drains(settings):
    settings.HUB_ALERT_BACKLOG = 3
    sub = SubscriptionFactory(name="slow")
    waiting = [DeliveryFactory(subscription=sub, status=DeliveryStatus.PENDING) for _ in range(4)]
    watch.watch(timezone.now())
    (alert,) = open_alerts(AlertKind.BACKLOG_HIGH)
    assert alert.message == "More than 3 deliveries are waiting: slow (4)."
    watch.watch(timezone.now())
    assert Alert.objects.filter(kind=AlertKind.BACKLOG_HIGH).count() == 1
    Delivery.objects.filter(pk=waiting[0].pk).update(status=DeliveryStatus.SUCCEEDED)
    watch.watch(timezone.now())
    assert open_alerts() == []


def test_the_sweep_makes_the_hubs_source_for_subscriptions_to_choose():
    assert not Source.objects.filter(provider="hub").exists()
    sweep.sweep()
    source = Source.objects.get(provider="hub")
    assert source.slug == "hub" and source.is_internal
    sweep.sweep()
    assert Source.objects.filter(provider="hub").count() == 1


def test_a_source_named_hub_already_is_left_alone():
    theirs, _ = make_source("gridx", slug="hub")
    ours = alerts.hub_source()
    assert ours != theirs and ours.slug == "hub-alerts" and ours.provider == "hub"


def test_alerts_are_mailed_and_posted_to_slack_once(settings, receiver):
    settings.HUB_ALERT_EMAILS = ["ops@example.com", "oncall@example.com"]
    settings.HUB_ALERT_SLACK_URL = receiver.url
    sub = SubscriptionFactory(name="billing\nBcc: evil@example.com")
    alerts.subscription_disabled(sub.pk, "The target answered 410 Gone.")
    assert notify.notify_pending() == 1
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.subject.startswith("[hub] subscription.disabled: billing Bcc: evil")
    assert "/admin/dashboard/" in message.body
    (posted,) = receiver.wait_for(1)
    text = json.loads(posted.body)["text"]
    assert "*subscription.disabled*" in text and "410 Gone" in text
    assert notify.notify_pending() == 0
    assert len(mail.outbox) == 1 and len(receiver.requests) == 1


def test_slack_gets_the_same_target_checks_as_subscriptions(settings, caplog):
    settings.HUB_ALERT_SLACK_URL = "http://169.254.169.254/latest/hook"
    settings.HUB_ALERT_EMAILS = []
    settings.HUB_ALLOW_PRIVATE_TARGETS = False
    alerts.subscription_disabled(SubscriptionFactory().pk, "stopped")
    with caplog.at_level(logging.WARNING, logger="subscriptions.services.notify"):
        notify.notify_pending()
    assert "Slack message not sent" in caplog.text and "169.254.169.254/latest" not in caplog.text


def test_old_alerts_are_not_mailed_late(settings):
    settings.HUB_ALERT_EMAILS = ["ops@example.com"]
    alerts.subscription_disabled(SubscriptionFactory().pk, "stopped")
    Alert.objects.update(opened_at=timezone.now() - timedelta(hours=2))
    notify.notify_pending()
    assert mail.outbox == [] and not Alert.objects.filter(notified_at=None).exists()


def test_the_hubs_source_refuses_every_request(client, api):
    source = alerts.hub_source()
    answer = client.post(f"/hooks/{source.slug}/", b"{}", content_type="application/json")
    assert answer.status_code == 401
    created = api.post("/api/v1/sources/", {"slug": "mine", "provider": "hub"}, format="json")
    assert created.status_code == 400 and "provider" in created.json()
    changed = api.patch(f"/api/v1/sources/{source.slug}/", {"verify_nothing": True}, format="json")
    assert changed.status_code == 403
    assert api.delete(f"/api/v1/sources/{source.slug}/").status_code == 403
    assert api.get(f"/api/v1/sources/{source.slug}/").json()["provider"] == "hub"
    assert Source.objects.get(pk=source.pk).verify_nothing is False


def test_a_broken_alert_check_never_stops_delivering(receiver, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("alerts are down")

    monkeypatch.setattr(alerts, "raise_alert", broken)
    receiver.default = Answer(status=410)
    sub = SubscriptionFactory(url=receiver.url)
    with caplog.at_level(logging.ERROR, logger="subscriptions.services.alerts"):
        deliver(EventFactory(), sub=sub)
    sub.refresh_from_db()
    assert not sub.is_active and Delivery.objects.get().attempt_count == 1
    assert "alert check subscription_disabled failed" in caplog.text
