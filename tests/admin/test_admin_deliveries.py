import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from kombu.exceptions import OperationalError

from receivers.models import Event
from receivers.tests.factories import DispatchedEventFactory
from subscriptions import tasks, work
from subscriptions.models import Attempt, Delivery, DeliveryStatus
from subscriptions.tests.factories import DeliveryFactory, SubscriptionFactory
from tests.admin.pages import messages_of
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/subscriptions/delivery/"


def listed(response) -> set[int]:
    return {delivery.pk for delivery in response.context["cl"].result_list}


@pytest.fixture
def queued(monkeypatch):
    """Record what would go to Celery instead of running it."""
    calls: list[list[int]] = []
    monkeypatch.setattr(
        tasks.replay_deliveries_task,
        "apply_async",
        lambda args, **kwargs: calls.append(list(args[0])),
    )
    return calls


def test_filters_and_search(admin_client, source):
    first = SubscriptionFactory(name="first")
    second = SubscriptionFactory(name="second")
    failed = DeliveryFactory(
        event=DispatchedEventFactory(source=source, external_id="evt-a"), subscription=first
    )
    done = DeliveryFactory(
        event=DispatchedEventFactory(source=source, external_id="evt-b"),
        subscription=second,
        status=DeliveryStatus.SUCCEEDED,
        attempts=(200,),
    )
    assert listed(admin_client.get(CHANGELIST)) == {failed.pk, done.pk}
    for query, expected in {
        "status__exact=failed": {failed.pk},
        "status__exact=succeeded": {done.pk},
        f"subscription__id__exact={second.pk}": {done.pk},
        f"q={failed.webhook_id}": {failed.pk},
        "q=evt-b": {done.pk},
        "q=evt": set(),
    }.items():
        response = admin_client.get(f"{CHANGELIST}?{query}")
        assert response.status_code == 200, query
        assert listed(response) == expected, query


def test_replay_selected_runs_in_celery_in_chunks(admin_client, source, queued):
    sub = SubscriptionFactory()
    events = Event.objects.bulk_create(
        [
            Event(source=source, external_id=f"bulk-{n}", type="t", raw_body=b"{}", payload={})
            for n in range(2500)
        ]
    )
    Delivery.objects.bulk_create(
        [
            Delivery(
                event=e, subscription=sub, status=DeliveryStatus.FAILED, webhook_id=f"msg_{e.pk}"
            )
            for e in events
        ]
    )
    response = admin_client.post(
        CHANGELIST,
        # "Select all 2500": the page posts the visible rows and select_across.
        {
            "action": "replay_selected",
            "select_across": "1",
            "index": "0",
            "_selected_action": [events[0].deliveries.get().pk],
        },
        follow=True,
    )
    assert "Queued 2500 deliveries for replay." in messages_of(response)
    assert [len(chunk) for chunk in queued] == [1000, 1000, 500]
    assert sorted(pk for chunk in queued for pk in chunk) == sorted(
        Delivery.objects.values_list("pk", flat=True)
    )
    assert LogEntry.objects.filter(change_message="Replayed.").count() == 2500
    # Nothing ran yet: the admin only handed the work over.
    assert not Delivery.objects.exclude(status=DeliveryStatus.FAILED).exists()


def test_replay_selected_keeps_old_attempts_and_adds_one(admin_client, failed_delivery):
    response = admin_client.post(
        CHANGELIST,
        {"action": "replay_selected", "_selected_action": [failed_delivery.pk]},
        follow=True,
    )
    assert "Queued 1 delivery for replay." in messages_of(response)
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.SUCCEEDED
    assert failed_delivery.attempt_count == 2
    assert list(
        Attempt.objects.filter(delivery=failed_delivery)
        .order_by("pk")
        .values_list("status_code", "is_replay")
    ) == [(500, False), (200, True)]


def test_replay_button_on_the_delivery_page(admin_client, failed_delivery, receiver):
    page = admin_client.get(
        reverse("admin:subscriptions_delivery_change", args=[failed_delivery.pk])
    )
    assert 'id="replay-delivery"' in page.content.decode()
    assert "oops" in page.content.decode()
    url = reverse("admin:subscriptions_delivery_replay", args=[failed_delivery.pk])
    assert admin_client.get(url).status_code == 405
    response = admin_client.post(url, follow=True)
    assert "Queued 1 delivery for replay." in messages_of(response)
    assert response.content.decode().count('class="field-is_replay"') == 2
    assert len(receiver.requests) == 1
    headers = receiver.requests[0].headers
    assert headers["webhook-id"] == failed_delivery.webhook_id


def test_broker_down_marks_the_replay_for_the_sweep(admin_client, failed_delivery, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("broker down")

    monkeypatch.setattr(tasks.replay_deliveries_task, "apply_async", refuse)
    monkeypatch.setattr(work, "request_drains", lambda ids: None)
    response = admin_client.post(
        CHANGELIST,
        {"action": "replay_selected", "_selected_action": [failed_delivery.pk]},
        follow=True,
    )
    assert "Queued 1 delivery for replay." in messages_of(response)
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.PENDING
    assert failed_delivery.replay_requested


def test_replay_needs_its_own_permission(client, failed_delivery, queued):
    viewer = StaffUserFactory(username="viewer", permissions=["subscriptions.view_delivery"])
    client.force_login(viewer)
    page = client.get(CHANGELIST).content.decode()
    assert "replay_selected" not in page
    detail = client.get(reverse("admin:subscriptions_delivery_change", args=[failed_delivery.pk]))
    assert 'id="replay-delivery"' not in detail.content.decode()
    url = reverse("admin:subscriptions_delivery_replay", args=[failed_delivery.pk])
    assert client.post(url).status_code == 403
    client.post(CHANGELIST, {"action": "replay_selected", "_selected_action": [failed_delivery.pk]})
    assert queued == []

    replayer = StaffUserFactory(
        username="replayer",
        permissions=["subscriptions.view_delivery", "subscriptions.replay_delivery"],
    )
    client.force_login(replayer)
    assert "replay_selected" in client.get(CHANGELIST).content.decode()
    assert client.post(url).status_code == 302
    assert queued == [[failed_delivery.pk]]
    assert LogEntry.objects.get(user=replayer).object_id == str(failed_delivery.pk)


def test_deliveries_are_read_only(admin_client, failed_delivery):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    url = reverse("admin:subscriptions_delivery_change", args=[failed_delivery.pk])
    assert admin_client.post(url, {"status": "succeeded"}).status_code == 403
    assert "delete_selected" not in admin_client.get(CHANGELIST).content.decode()
