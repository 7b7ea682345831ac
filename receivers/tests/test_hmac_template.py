"""A generic-HMAC template must sign the body: one rule, the provider's, in the API and the
admin alike, and verification refuses a source saved without it."""

from __future__ import annotations

import json

import pytest

from receivers.models import Event, Source
from receivers.tests.factories import HMAC_OPTIONS, make_source
from receivers.tests.webhooks import post, sign

pytestmark = pytest.mark.django_db

UNSIGNED_BODY = {"hmac_template": "{header:X-Acme-Timestamp}"}


def test_the_api_refuses_a_template_without_the_body(api):
    body = {"slug": "acme", "provider": "hmac", **HMAC_OPTIONS, **UNSIGNED_BODY}
    answer = api.post("/api/v1/sources/", body, format="json")
    assert answer.status_code == 400
    assert "{body}" in answer.json()["hmac_template"][0]
    assert not Source.objects.exists()


def test_the_api_refuses_changing_the_template_to_one_without_the_body(api):
    body = {"slug": "acme", "provider": "hmac", **HMAC_OPTIONS}
    assert api.post("/api/v1/sources/", body, format="json").status_code == 201
    assert api.patch("/api/v1/sources/acme/", UNSIGNED_BODY, format="json").status_code == 400


def test_the_admin_refuses_a_template_without_the_body(admin_client):
    form = {
        "slug": "acme",
        "provider": "hmac",
        "description": "",
        "is_active": "on",
        "allowed_ips": "",
        "tolerance_seconds": "300",
        **HMAC_OPTIONS,
        **UNSIGNED_BODY,
        "secret": "",
    }
    answer = admin_client.post("/admin/receivers/source/add/", form)
    assert answer.status_code == 200
    assert "{body}" in answer.content.decode()
    assert not Source.objects.exists()


def test_a_source_saved_without_the_body_in_its_template_accepts_nothing(client):
    source, (secret,) = make_source("hmac")
    Source.objects.filter(pk=source.pk).update(**UNSIGNED_BODY)
    source.refresh_from_db()
    body = json.dumps({"id": "evt-1", "type": "x"}).encode()
    answer = post(client, source, body, sign(source, body, secret))
    assert answer.status_code == 401
    assert not Event.objects.exists()
