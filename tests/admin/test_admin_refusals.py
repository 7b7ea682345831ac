"""Refused requests on the source's pages, in their own read-only list, and in the API; silent
sources on the source's pages."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from receivers import refusals
from receivers.models import Refusal, RefusalReason, Source
from receivers.tests.factories import EventFactory, make_source
from receivers.tests.webhooks import gridx_body, post, sign
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def badly_signed(client, source, times: int = 1, remote_addr: str = "203.0.113.5") -> None:
    body = gridx_body()
    for _ in range(times):
        signed = sign(source, body, "whsec_not-the-right-one-000")
        assert post(client, source, body, signed, REMOTE_ADDR=remote_addr).status_code == 401
    refusals.flush()


def test_a_badly_signed_request_shows_on_the_source_page_with_its_reason(client, admin_client):
    source, _ = make_source("gridx", slug="gridx-prod")
    badly_signed(client, source, times=3)

    listed = admin_client.get("/admin/receivers/source/").content.decode()
    assert "Verification failed" in listed  # the last refusal's reason
    assert f'?source__id__exact={source.pk}">3</a>' in listed  # the day's count, linked

    page = admin_client.get(reverse("admin:receivers_source_change", args=[source.pk]))
    html = page.content.decode()
    assert "3 in the last 24 hours" in html
    assert "Verification failed" in html and "203.0.113.5" in html
    assert "no digest matches an active secret" in html  # why, for the operator


def test_what_the_cap_dropped_is_counted_on_the_source(admin_client, settings, client, monkeypatch):
    settings.HUB_REFUSALS_PER_MINUTE = 2
    start = timezone.now().replace(second=1).timestamp()
    monkeypatch.setattr(refusals, "clock", lambda: start)  # all in one minute
    source, _ = make_source("gridx")
    badly_signed(client, source, times=5)
    html = admin_client.get(reverse("admin:receivers_source_change", args=[source.pk]))
    assert "5 in the last 24 hours (3 not stored: over 2 a minute)" in html.content.decode()


def test_the_refusal_list_filters_by_source_and_reason(admin_client, client):
    source, _ = make_source("gridx")
    other, _ = make_source("gridx")
    badly_signed(client, source)
    badly_signed(client, other)
    page = admin_client.get(
        "/admin/receivers/refusal/", {"source__id__exact": source.pk, "reason": "signature"}
    )
    assert page.status_code == 200
    shown = list(page.context["cl"].result_list)
    assert [r.source for r in shown] == [source]
    # A record, not something to edit.
    refusal = Refusal.objects.filter(source=source).get()
    assert admin_client.get(f"/admin/receivers/refusal/{refusal.pk}/change/").status_code == 200
    assert admin_client.get("/admin/receivers/refusal/add/").status_code == 403


def test_a_silent_source_is_flagged_with_what_its_platform_does(admin_client):
    now = timezone.now()
    quiet, _ = make_source("gridx", slug="quiet", expected_interval=timedelta(hours=1))
    EventFactory(source=quiet, received_at=now - timedelta(hours=3))
    busy, _ = make_source("edrv", slug="busy", expected_interval=timedelta(hours=1))
    EventFactory(source=busy, received_at=now - timedelta(minutes=5))

    listed = admin_client.get("/admin/receivers/source/").content.decode()
    assert listed.count('<span class="hub-bad">silent</span>') == 1
    page = admin_client.get(reverse("admin:receivers_source_change", args=[quiet.pk]))
    html = page.content.decode()
    assert "Silent: nothing for more than 1:00:00." in html
    assert "gridX deletes a webhook subscription that answers 410" in html
    fine = admin_client.get(reverse("admin:receivers_source_change", args=[busy.pk]))
    assert "Expected at least every 1:00:00." in fine.content.decode()


def test_the_expected_interval_is_set_in_the_admin(admin_client):
    form = {
        "slug": "edrv-watched",
        "provider": "edrv",
        "is_active": "on",
        "expected_interval": "2:00:00",
        "tolerance_seconds": "300",
        "hmac_algorithm": "sha256",
        "hmac_encoding": "hex",
        "hmac_template": "{body}",
    }
    answer = admin_client.post("/admin/receivers/source/add/", form)
    assert answer.status_code == 302
    assert Source.objects.get(slug="edrv-watched").expected_interval == timedelta(hours=2)


# --- the API ---------------------------------------------------------------------------------


def test_rejections_api_filters_by_source_reason_and_time(api, client):
    source, _ = make_source("gridx", slug="gridx-a")
    badly_signed(client, source, times=2)
    client.post("/hooks/nobody/", b"{}", content_type="application/json")
    refusals.flush()
    Refusal.objects.create(
        at=timezone.now() - timedelta(days=2), source=source, slug=source.slug, reason="too_large"
    )

    everything = api.get("/api/v1/rejections/").json()
    assert everything["count"] == 4
    mine = api.get("/api/v1/rejections/", {"source": "gridx-a", "reason": "signature"}).json()
    assert mine["count"] == 2
    first = mine["results"][0]
    assert first["source"] == "gridx-a" and first["remote_addr"] == "203.0.113.5"
    assert first["detail"] == "no digest matches an active secret"
    assert set(first) == {
        "id",
        "at",
        "slug",
        "source",
        "reason",
        "detail",
        "remote_addr",
        "body_size",
    }
    since = (timezone.now() - timedelta(days=1)).isoformat()
    recent = api.get("/api/v1/rejections/", {"source": "gridx-a", "after": since}).json()
    assert recent["count"] == 2
    before = api.get("/api/v1/rejections/", {"before": since}).json()
    assert [r["reason"] for r in before["results"]] == [RefusalReason.TOO_LARGE]
    unknown = api.get("/api/v1/rejections/", {"reason": "unknown_source"}).json()
    assert [(r["slug"], r["source"]) for r in unknown["results"]] == [("nobody", None)]
    assert api.get("/api/v1/rejections/", {"reason": "nonsense"}).status_code == 400
    assert api.get("/api/v1/rejections/", {"after": "yesterday"}).status_code == 400


def test_rejections_api_needs_the_view_permission(client):
    without = StaffUserFactory()
    client.force_login(without)
    assert client.get("/api/v1/rejections/").status_code == 403
    allowed = StaffUserFactory(permissions=["receivers.view_refusal"])
    client.force_login(allowed)
    assert client.get("/api/v1/rejections/").status_code == 200


def test_the_source_api_shows_activity_and_takes_an_expected_interval(api, client):
    created = api.post(
        "/api/v1/sources/",
        {"slug": "edrv-a", "provider": "edrv", "expected_interval": "01:00:00"},
        format="json",
    )
    assert created.status_code == 201, created.content
    source = make_source("gridx", slug="gridx-b")[0]
    badly_signed(client, source)
    activity = api.get("/api/v1/sources/gridx-b/").json()["activity"]
    assert activity["refused_last_24h"] == 1
    assert activity["last_refusal"]["reason"] == "signature"
    assert activity["silent_since"] is None
    edrv = api.get("/api/v1/sources/edrv-a/").json()
    assert edrv["expected_interval"] == "01:00:00"
    late = api.patch("/api/v1/sources/edrv-a/", {"expected_interval": "nope"}, format="json")
    assert late.status_code == 400
