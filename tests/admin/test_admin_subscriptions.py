import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from standardwebhooks import Webhook

from receivers.models import Event
from receivers.tests.factories import DispatchedEventFactory
from subscriptions import work
from subscriptions.models import DeliveryStatus, PayloadFormat, Subscription
from subscriptions.services import controls
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from subscriptions.tests.receiver import Answer
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/subscriptions/subscription/"


@pytest.fixture
def drains(monkeypatch):
    requested: list[int] = []
    monkeypatch.setattr(work, "request_drains", lambda ids: requested.extend(ids))
    return requested


def operation_url(sub: Subscription, name: str) -> str:
    return reverse("admin:subscriptions_subscription_operation", args=[sub.pk, name])


# Services


def test_pause_and_resume(drains):
    sub = SubscriptionFactory(
        failing_since=timezone.now() - timedelta(days=4),
        consecutive_failures=9,
        backoff_until=timezone.now() + timedelta(minutes=5),
    )
    queryset = Subscription.objects.filter(pk=sub.pk)
    assert controls.pause(queryset, reason="Paused by ops.") == 1
    assert controls.pause(queryset) == 0
    sub.refresh_from_db()
    assert (sub.is_paused, sub.disabled_reason) == (True, "Paused by ops.")
    assert sub.disabled_at is not None
    assert controls.resume(queryset) == 1
    sub.refresh_from_db()
    assert sub.is_active and not sub.is_paused
    assert sub.disabled_at is None and sub.disabled_reason == ""
    # Otherwise the sweep would disable it again at once, and the backlog would wait.
    assert sub.failing_since is None and sub.backoff_until is None
    assert drains == [sub.pk]


def test_rotate_signing_secret_keeps_the_old_one_signing():
    sub = SubscriptionFactory()
    old = sub.secret
    new = controls.rotate_signing_secret(sub, grace_hours=24)
    sub.refresh_from_db()
    assert sub.secret == new != old and sub.previous_secret == old
    assert (
        timedelta(hours=23) < sub.previous_secret_expires_at - timezone.now() <= timedelta(hours=24)
    )
    assert sub.signing_secrets() == [new, old]


@pytest.mark.parametrize("payload_format", [PayloadFormat.ORIGINAL, PayloadFormat.CLOUDEVENTS])
def test_send_test_event_posts_a_signed_ping(receiver, payload_format):
    sub = SubscriptionFactory(
        url=receiver.url, payload_format=payload_format, headers={"x-team": "billing"}
    )
    result = controls.send_test_event(sub)
    assert result.succeeded and result.status_code == 200
    assert '"ok": true' in result.excerpt
    headers, body = receiver.requests[0].headers, receiver.requests[0].body
    assert Webhook(sub.secret).verify(body, headers)
    assert headers["x-hub-test"] == "1" and headers["x-team"] == "billing"
    assert json.loads(body)["type"] == "ping"
    assert not Event.objects.exists()


def test_send_test_event_reports_a_failure(receiver):
    receiver.answers = [Answer.json(500)]
    result = controls.send_test_event(SubscriptionFactory(url=receiver.url))
    assert not result.succeeded and result.status_code == 500


def test_send_test_event_refuses_private_targets_unless_allowed(settings):
    settings.HUB_ALLOW_PRIVATE_TARGETS = False
    result = controls.send_test_event(SubscriptionFactory(url="http://127.0.0.1:9/x"))
    assert result.status_code is None and "refused" in result.error


# Admin


def test_add_shows_the_signing_secret_once(admin_client, source, receiver):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "name": "billing",
            "url": receiver.url,
            "event_types": '["appliance/*"]',
            "sources": [source.pk],
            "payload_format": "original",
            "headers": "{}",
            "timeout_seconds": "15",
        },
        follow=True,
    )
    sub = Subscription.objects.get(name="billing")
    assert sub.event_types == ["appliance/*"]
    assert any(sub.secret in m for m in messages_of(response))
    listing = admin_client.get(CHANGELIST).content.decode()
    assert sub.secret not in listing and sub.masked_secret in listing
    page = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    assert sub.secret not in page.content.decode()


def test_add_form_starts_with_every_event_type(admin_client):
    page = admin_client.get(f"{CHANGELIST}add/").content.decode()
    # A comma-separated line now (issue 13), no longer raw JSON.
    assert 'name="event_types" value="*"' in page


def test_form_refuses_private_targets_when_not_allowed(admin_client, settings):
    settings.HUB_ALLOW_PRIVATE_TARGETS = False
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "name": "internal",
            "url": "http://169.254.169.254/latest",
            "event_types": '["*"]',
            "payload_format": "original",
            "headers": "{}",
            "timeout_seconds": "15",
        },
    )
    assert response.status_code == 200
    assert "non-public address" in response.content.decode()
    assert not Subscription.objects.exists()


def test_health_at_a_glance(admin_client, source):
    healthy = SubscriptionFactory(name="healthy", last_success_at=timezone.now())
    failing = SubscriptionFactory(
        name="failing", consecutive_failures=7, failing_since=timezone.now() - timedelta(hours=2)
    )
    SubscriptionFactory(
        name="dead",
        is_active=False,
        disabled_at=timezone.now(),
        disabled_reason="The target answered 410 Gone.",
    )
    DeliveryFactory(
        event=DispatchedEventFactory(source=source),
        subscription=failing,
        status=DeliveryStatus.RETRYING,
    )
    response = admin_client.get(CHANGELIST)
    page = response.content.decode()
    assert "The target answered 410 Gone." in page
    assert "failing since 2" in page and "active" in page
    rows = {sub.name: sub for sub in response.context["cl"].result_list}
    assert rows["failing"].open_count == 1 and rows["healthy"].open_count == 0
    assert healthy.masked_secret in page


def test_list_actions(admin_client, receiver, drains):
    sub = SubscriptionFactory(url=receiver.url, name="billing")

    def act(action):
        return messages_of(
            admin_client.post(
                CHANGELIST, {"action": action, "_selected_action": [sub.pk]}, follow=True
            )
        )

    assert act("pause_selected") == ["Paused 1 subscription(s)."]
    assert Subscription.objects.get().is_paused
    assert "Resumed 1 subscription(s)" in act("resume_selected")[0]
    old = sub.secret
    rotated = act("rotate_signing_secrets")
    sub.refresh_from_db()
    assert sub.secret != old and sub.secret in rotated[0]
    assert (
        "Rotated the signing secret" in LogEntry.objects.get(object_id=str(sub.pk)).change_message
    )
    tested = act("send_test_events")
    assert tested[0].startswith("Test event to billing: HTTP 200 in ")
    assert len(receiver.requests) == 1


def test_replay_failed_action_and_button(admin_client, source, subscription, receiver):
    for _ in range(2):
        DeliveryFactory(event=DispatchedEventFactory(source=source), subscription=subscription)
    DeliveryFactory(
        event=DispatchedEventFactory(source=source),
        subscription=subscription,
        status=DeliveryStatus.SUCCEEDED,
        attempts=(200,),
    )
    response = admin_client.post(
        CHANGELIST,
        {"action": "replay_failed_deliveries", "_selected_action": [subscription.pk]},
        follow=True,
    )
    assert "Queued 2 failed deliveries for replay." in messages_of(response)
    assert len(receiver.requests) == 2
    assert not subscription.deliveries.filter(status=DeliveryStatus.FAILED).exists()
    DeliveryFactory(event=DispatchedEventFactory(source=source), subscription=subscription)
    page = admin_client.get(
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
    )
    assert "Replay 1 failed delivery" in page.content.decode()
    response = admin_client.post(operation_url(subscription, "replay-failed"), follow=True)
    assert "Queued 1 failed delivery for replay." in messages_of(response)
    assert LogEntry.objects.filter(
        object_id=str(subscription.pk), change_message="Replayed 1 failed delivery."
    ).exists()


def test_page_buttons(admin_client, receiver, drains):
    sub = SubscriptionFactory(url=receiver.url, name="billing")
    page = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[sub.pk]))
    for label in ("Send test event", "Pause", "Rotate signing secret"):
        assert label in page.content.decode()
    receiver.answers = [Answer.json(503)]
    response = admin_client.post(operation_url(sub, "send-test"), follow=True)
    assert "Test event to billing: HTTP 503" in messages_of(response)[0]
    assert '"ok": false' in messages_of(response)[0]
    admin_client.post(operation_url(sub, "pause"))
    sub.refresh_from_db()
    assert sub.is_paused and "admin" in sub.disabled_reason
    assert (
        "Resume"
        in admin_client.get(
            reverse("admin:subscriptions_subscription_change", args=[sub.pk])
        ).content.decode()
    )
    admin_client.post(operation_url(sub, "resume"))
    sub.refresh_from_db()
    assert sub.is_active and not sub.is_paused
    old = sub.secret
    response = admin_client.post(operation_url(sub, "rotate-secret"), follow=True)
    sub.refresh_from_db()
    assert sub.previous_secret == old and sub.secret in messages_of(response)[-1]
    assert admin_client.post(operation_url(sub, "explode")).status_code == 404
    assert admin_client.get(operation_url(sub, "pause")).status_code == 405


def test_operations_need_permissions(client, failed_delivery):
    sub = failed_delivery.subscription
    client.force_login(
        StaffUserFactory(username="viewer", permissions=["subscriptions.view_subscription"])
    )
    for name in ("pause", "rotate-secret", "send-test", "replay-failed"):
        assert client.post(operation_url(sub, name)).status_code == 403, name
    page = client.get(CHANGELIST).content.decode()
    assert "pause_selected" not in page and "replay_failed_deliveries" not in page
    sub.refresh_from_db()
    assert sub.is_active
