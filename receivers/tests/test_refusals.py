"""Refused requests: one compact record each (no header, no body), at most the cap per source and
minute, counted beyond it, written in batches by the flusher and purged with the events."""

import io
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from receivers import metrics, refusals, views
from receivers.models import Refusal, RefusalMinute, RefusalReason
from receivers.retention import purge_old_events
from receivers.tests.factories import make_source
from receivers.tests.webhooks import fixture_of, gridx_body, post, sign

pytestmark = pytest.mark.django_db

MINUTE = 1_780_000_020.0  # a moment early in a minute: a test's refusals all fall in it


@pytest.fixture(autouse=True)
def one_minute(monkeypatch):
    """Every refusal in the same minute."""
    monkeypatch.setattr(refusals, "clock", lambda: MINUTE)


def test_each_reason_is_recorded_without_headers(client):
    source, (secret,) = make_source("gridx")
    fenced, (fenced_secret,) = make_source("gridx", allowed_ips="10.9.9.9")
    edrv, (edrv_secret,) = make_source("edrv")
    body = gridx_body()
    signed = sign(source, body, secret)
    assert post(client, source, body + b" ", signed, REMOTE_ADDR="192.0.2.7").status_code == 401
    assert post(client, source, b"{nope", sign(source, b"{nope", secret)).status_code == 400
    assert post(client, fenced, body, sign(fenced, body, fenced_secret)).status_code == 401
    assert client.post("/hooks/nobody/", body, content_type="application/json").status_code == 404
    old = timezone.now() - timedelta(hours=1)
    edrv_body = fixture_of("edrv")
    stale = post(client, edrv, edrv_body, sign(edrv, edrv_body, edrv_secret, now=old))
    assert stale.status_code == 401
    with override_settings(HUB_MAX_BODY_BYTES=10):
        assert post(client, source, body, signed).status_code == 413
    assert not Refusal.objects.exists()  # nothing is written on the receive path

    refusals.flush()

    found = {(r.slug, r.reason, r.source_id) for r in Refusal.objects.all()}
    assert found == {
        (source.slug, RefusalReason.SIGNATURE, source.pk),
        (source.slug, RefusalReason.BAD_PAYLOAD, source.pk),
        (fenced.slug, RefusalReason.IP_NOT_ALLOWED, fenced.pk),
        ("nobody", RefusalReason.UNKNOWN_SOURCE, None),
        (edrv.slug, RefusalReason.STALE_TIMESTAMP, edrv.pk),
        (source.slug, RefusalReason.TOO_LARGE, source.pk),
    }
    tampered = Refusal.objects.get(reason=RefusalReason.SIGNATURE)
    assert (tampered.remote_addr, tampered.body_size) == ("192.0.2.7", len(body) + 1)
    assert Refusal.objects.get(reason=RefusalReason.TOO_LARGE).body_size == len(body)
    stale_one = Refusal.objects.get(reason=RefusalReason.STALE_TIMESTAMP)
    assert stale_one.detail == "the signed timestamp is outside the tolerance"
    stored = " ".join(str(vars(r)) for r in Refusal.objects.all())
    assert secret not in stored and signed.headers["X-Signature"] not in stored


@override_settings(HUB_REFUSALS_PER_MINUTE=5)
def test_the_cap_stores_so_many_per_source_and_minute_and_counts_the_rest(client):
    source, (secret,) = make_source("gridx")
    other, _ = make_source("gridx")
    body = gridx_body()
    for _ in range(20):
        post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    for _ in range(3):
        post(client, other, body, sign(other, body, "whsec_wrong-secret-000000"))

    refusals.flush()

    assert Refusal.objects.filter(source=source).count() == 5
    assert Refusal.objects.filter(source=other).count() == 3
    minute = RefusalMinute.objects.get(source=source)
    assert (minute.refused, minute.stored, minute.dropped) == (20, 5, 15)
    assert metrics.take()[("hub_refusals_dropped", (source.slug,), "")] == 15


@override_settings(HUB_REFUSALS_PER_MINUTE=5)
def test_processes_flushing_the_same_minute_share_the_cap(client):
    source, _ = make_source("gridx")
    body = gridx_body()
    for _process in range(3):
        for _ in range(4):
            post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
        refusals.flush()
    assert Refusal.objects.count() == 5
    minute = RefusalMinute.objects.get(source=source)
    assert (minute.refused, minute.stored) == (12, 5)


@override_settings(HUB_REFUSALS_PER_MINUTE=5)
def test_made_up_slugs_share_one_allowance(client):
    for n in range(50):
        client.post(f"/hooks/made-up-{n}/", b"{}", content_type="application/json")
    refusals.flush()
    assert Refusal.objects.count() == 5
    unknown = RefusalMinute.objects.get(source=None)
    assert (unknown.refused, unknown.stored) == (50, 5)


def test_a_disabled_source_gets_its_refusals(client):
    source, (secret,) = make_source("gridx", is_active=False)
    body = gridx_body()
    assert post(client, source, body, sign(source, body, secret)).status_code == 404
    refusals.flush()
    refusal = Refusal.objects.get()
    assert (refusal.source, refusal.reason) == (source, RefusalReason.UNKNOWN_SOURCE)
    assert RefusalMinute.objects.get().source == source


def test_a_failed_flush_keeps_the_records_for_the_next(client, monkeypatch):
    source, _ = make_source("gridx")
    body = gridx_body()
    post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    real_store = refusals.store

    def database_down(*args):
        raise OperationalError("database down")

    monkeypatch.setattr(refusals, "store", database_down)
    with pytest.raises(OperationalError):
        refusals.flush()
    monkeypatch.setattr(refusals, "store", real_store)
    post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    refusals.flush()
    assert Refusal.objects.count() == 2
    assert RefusalMinute.objects.get().refused == 2


def test_memory_is_bounded_while_the_database_is_away():
    buffer = refusals.Buffer()
    for n in range(refusals.MAX_KEPT + 500):
        # A new minute every 50: the per-minute cap alone would keep them all.
        record = refusals.Record(MINUTE + 60 * (n // 50), "s", 1, "signature", "", 0)
        buffer.add(record, cap=50, label="s")
    counts, records = buffer.take()
    assert len(records) == refusals.MAX_KEPT
    assert sum(c.refused for c in counts.values()) == refusals.MAX_KEPT + 500


@override_settings(HUB_REFUSALS_PER_MINUTE=60)
def test_a_flood_of_ten_thousand_bad_requests_stores_no_more_than_the_cap():
    source, _ = make_source("gridx")
    body = gridx_body()
    headers = sign(source, body, "whsec_wrong-secret-000000").headers
    meta = {
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "198.51.100.9",
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    for _ in range(10_000):
        status, _body, _headers = views.handle("POST", meta, io.BytesIO(body).read, source.slug, "")
        assert status == 401
    refusals.flush()
    assert Refusal.objects.count() == 60
    minute = RefusalMinute.objects.get()
    assert (minute.refused, minute.stored) == (10_000, 60)
    assert metrics.take()[("hub_refusals_dropped", (source.slug,), "")] == 10_000 - 60


def test_refusals_are_purged_with_the_events(client):
    source, _ = make_source("gridx")
    old = timezone.now() - timedelta(days=30)
    Refusal.objects.create(at=old, source=source, slug=source.slug, reason="signature")
    RefusalMinute.objects.create(source=source, minute=old, refused=1, stored=1)
    kept = Refusal.objects.create(at=timezone.now(), source=source, slug="x", reason="signature")
    purge_old_events(days=7)
    assert list(Refusal.objects.all()) == [kept]
    assert not RefusalMinute.objects.exists()


def test_the_flusher_writes_refusals_in_the_background(client, settings):
    source, _ = make_source("gridx")
    body = gridx_body()
    post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    flusher = metrics.Flusher()
    flusher.configure(lambda amounts: None, interval=60)
    flusher.jobs.append(refusals.flush)
    assert flusher.flush() is True
    assert Refusal.objects.get().source == source


@override_settings(HUB_REFUSALS_PER_MINUTE=3)
def test_refusals_are_logged_only_as_often_as_they_are_recorded(client, caplog):
    source, _ = make_source("gridx")
    body = gridx_body()
    with caplog.at_level("WARNING", logger="receivers.services"):
        for _ in range(10):
            post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    lines = [r.getMessage() for r in caplog.records if r.name == "receivers.services"]
    assert lines == [f"source {source.slug} refused: no digest matches an active secret"] * 3


def test_a_source_deleted_before_the_flush_is_counted_as_unknown(client):
    source, _ = make_source("gridx")
    body = gridx_body()
    post(client, source, body, sign(source, body, "whsec_wrong-secret-000000"))
    source.delete()
    refusals.flush()
    refusal = Refusal.objects.get()
    assert (refusal.source, refusal.slug) == (None, source.slug)
    assert RefusalMinute.objects.get().source is None
