import json

import pytest
from django.utils import timezone

from receivers.models import Event
from receivers.providers import get_provider
from receivers.tests.factories import make_source

pytestmark = pytest.mark.django_db


def post_signed(client, source, body: bytes, path: str = ""):
    secret = source.secrets.first().value
    signed = get_provider(source.provider).sign(body, secret, source, timezone.now())
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.headers.items()}
    return client.post(
        f"/hooks/{source.slug}/{path}", body, content_type="application/json", **headers
    )


def test_gridx_event_is_stored_once(client):
    source, _ = make_source("gridx")
    body = json.dumps(
        {
            "id": "e-1",
            "type": "appliance/online",
            "time": "2026-01-01T00:00:00Z",
            "specVersion": "1.0",
            "source": "/systems/x",
            "data": {},
        }
    ).encode()
    assert post_signed(client, source, body).status_code == 200
    assert post_signed(client, source, body).status_code == 200
    event = Event.objects.get()
    assert (event.type, event.duplicates, bytes(event.raw_body)) == ("appliance/online", 1, body)
    assert event.headers["x-signature"] == "****"
