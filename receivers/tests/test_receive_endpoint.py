"""The receive endpoint's answers: what a platform sees for every kind of request.

Platforms act on the status alone: gridX deletes a subscription on 410 and retries 5xx, so
bad input must never produce either; 503 (with Retry-After) is kept for a real outage.
"""

import base64
import ipaddress
import json
from unittest import mock
from urllib.parse import quote

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from receivers.models import Event
from receivers.providers import PROVIDERS
from receivers.providers.base import BadPayload
from receivers.services import client_address, load_json
from receivers.tests.factories import PROVIDER_OPTIONS, SecretFactory, SourceFactory, make_source
from receivers.tests.webhooks import (
    GRIDX_EVENT,
    fixture_of,
    gridx_body,
    new_secret,
    post,
    sign,
)

pytestmark = pytest.mark.django_db


def post_signed(client, source, secret: str, body: bytes, path: str = "", **meta):
    return post(client, source, body, sign(source, body, secret), path=path, **meta)


def test_unknown_source_is_404(client):
    response = client.post("/hooks/nobody-here/", gridx_body(), content_type="application/json")
    assert response.status_code == 404


def test_disabled_source_is_404(client):
    source, (secret,) = make_source("gridx", is_active=False)
    assert post_signed(client, source, secret, gridx_body()).status_code == 404
    assert not Event.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete", "head"])
def test_only_post_is_allowed(client, method):
    source, _ = make_source("gridx")
    response = getattr(client, method)(f"/hooks/{source.slug}/")
    assert response.status_code == 405
    assert response["Allow"] == "POST"


@override_settings(HUB_MAX_BODY_BYTES=200)
def test_body_above_the_limit_is_413_and_not_stored(client):
    source, (secret,) = make_source("gridx")
    small = gridx_body()
    assert len(small) <= 200
    assert post_signed(client, source, secret, small).status_code == 200
    large = gridx_body(id="another", data={"padding": "x" * 200})
    assert post_signed(client, source, secret, large).status_code == 413
    assert Event.objects.count() == 1


def test_non_json_body_is_400_and_not_stored(client):
    source, (secret,) = make_source("gridx")
    response = post_signed(client, source, secret, b"id=1&type=ping")
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "provider, body",
    [
        ("gridx", {"type": "appliance/online", "data": {}}),
        ("gridx", {"id": "no-type-anywhere"}),
        ("jedlix", {"eventType": "userCreated", "isTest": False}),
        ("openvolt", {"event_id": "meter.created", "payload": {}}),
        ("ideavate", {"webhook": {"trigger": "UserAdded"}}),
        ("ideavate", {"webhook": "not an object"}),
        ("edrv", {"type": "session.started", "data": {}}),
    ],
)
def test_json_lacking_what_the_provider_requires_is_400(client, provider, body):
    source, (secret,) = make_source(provider)
    response = post_signed(client, source, secret, json.dumps(body).encode())
    assert response.status_code == 400
    assert "error" in response.json()
    assert not Event.objects.exists()


def test_jedlix_test_message_is_acknowledged_even_when_sparse(client):
    source, (secret,) = make_source("jedlix")
    response = post_signed(client, source, secret, b'{"isTest": true}')
    assert response.status_code == 200
    assert Event.objects.get().is_test


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_duplicate_is_answered_the_same_and_stored_once(client, provider):
    source, (secret,) = make_source(provider)
    body = fixture_of(provider)
    first = post_signed(client, source, secret, body)
    again = [post_signed(client, source, secret, body) for _ in range(2)]
    assert [first.status_code] + [r.status_code for r in again] == [200, 200, 200]
    if provider == "edrv":
        assert {r.content for r in [first, *again]} == {b""}
    else:
        assert [r.json()["duplicate"] for r in [first, *again]] == [False, True, True]
    event = Event.objects.get()
    assert event.duplicates == 2


def test_gridx_type_is_taken_from_the_url_path(client):
    source, (secret,) = make_source("gridx")
    body = json.dumps(GRIDX_EVENT).encode()
    response = post_signed(client, source, secret, body, path="events/appliance/online")
    assert response.status_code == 200
    assert Event.objects.get().type == "appliance/online"


def test_gridx_type_in_the_body_wins_over_the_path(client):
    source, (secret,) = make_source("gridx")
    body = gridx_body(type="ev/plugged")
    assert post_signed(client, source, secret, body, path="events/ev/unplugged").status_code == 200
    assert Event.objects.get().type == "ev/plugged"


def test_ip_allow_list(client):
    source, (secret,) = make_source("gridx", allowed_ips="10.0.0.0/8\n2001:db8::/32\n192.0.2.7")
    for address, status in [
        ("127.0.0.1", 401),
        ("10.20.30.40", 200),
        ("192.0.2.7", 200),
        ("192.0.2.8", 401),
        ("2001:db8::1", 200),
    ]:
        body = gridx_body(id=f"from-{address}")
        assert post_signed(client, source, secret, body, REMOTE_ADDR=address).status_code == status
    assert Event.objects.count() == 3


PROXIES = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("127.0.0.1/32"))


@pytest.mark.parametrize(
    "remote_addr, forwarded_for, status",
    [
        # From a trusted proxy: the address it received the request from decides.
        ("10.1.2.3", "192.0.2.7", 200),
        ("10.1.2.3", "198.51.100.1", 401),
        # A client's own X-Forwarded-For entry (left of the proxy's) is never believed.
        ("10.1.2.3", "192.0.2.7, 198.51.100.1", 401),
        ("10.1.2.3", "198.51.100.1, 192.0.2.7", 200),
        # Two proxies in a row: the last hop that is not one of them.
        ("127.0.0.1", "192.0.2.7, 10.1.9.9", 200),
        # Not from a trusted proxy: its X-Forwarded-For means nothing.
        ("198.51.100.1", "192.0.2.7", 401),
        ("192.0.2.7", "198.51.100.1", 200),
        # From a trusted proxy that names no address, or an unreadable one.
        ("10.1.2.3", "", 401),
        ("10.1.2.3", "unknown", 401),
    ],
)
def test_allow_list_behind_trusted_proxies(client, settings, remote_addr, forwarded_for, status):
    settings.HUB_TRUSTED_PROXIES = PROXIES
    source, (secret,) = make_source("gridx", allowed_ips="192.0.2.0/24")
    answer = post_signed(
        client,
        source,
        secret,
        gridx_body(),
        REMOTE_ADDR=remote_addr,
        HTTP_X_FORWARDED_FOR=forwarded_for,
    )
    assert answer.status_code == status
    assert Event.objects.count() == (status == 200)


def test_a_request_wholly_inside_the_trusted_proxies_is_from_where_it_started(settings):
    settings.HUB_TRUSTED_PROXIES = PROXIES
    assert client_address("10.1.0.1", "10.1.0.2, 127.0.0.1") == "10.1.0.2"
    settings.HUB_TRUSTED_PROXIES = ()
    assert client_address("10.1.0.1", "192.0.2.7") == "10.1.0.1"


def test_allow_list_with_an_unreadable_entry_fails_closed(client):
    source, (secret,) = make_source("gridx", allowed_ips="not-an-address\n10.0.0.0/8")
    assert post_signed(
        client, source, secret, gridx_body(), REMOTE_ADDR="10.0.0.1"
    ).status_code == (200)
    other = gridx_body(id="other")
    assert post_signed(client, source, secret, other, REMOTE_ADDR="127.0.0.1").status_code == 401


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_verify_nothing_source_accepts_unsigned_requests(client, provider):
    source = SourceFactory(provider=provider, verify_nothing=True)
    assert post(client, source, fixture_of(provider)).status_code == 200
    assert Event.objects.count() == 1


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_source_without_an_active_secret_is_never_open(client, provider):
    source = SourceFactory(provider=provider, **PROVIDER_OPTIONS.get(provider, {}))
    body = fixture_of(provider)
    assert post(client, source, body).status_code == 401
    assert post(client, source, body, sign(source, body, new_secret(provider))).status_code == 401
    expired = SecretFactory(source=source, expires_at=timezone.now())
    assert post(client, source, body, sign(source, body, expired.plaintext)).status_code == 401
    assert not Event.objects.exists()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_openvolt_accepts_only_the_token_or_the_basic_password(client):
    source, (secret,) = make_source("openvolt")
    url = f"/hooks/{source.slug}/"
    body = fixture_of("openvolt")

    def send(query: str = "", **headers):
        return client.post(url + query, body, content_type="application/json", headers=headers)

    assert send(f"?token={quote(secret)}").status_code == 200
    assert send(Authorization=basic("openvolt", secret)).status_code == 200
    assert send(Authorization=basic("", secret)).status_code == 200
    for rejected in [
        send(),
        send("?token="),
        send("?token=wrong"),
        send(f"?token={quote(secret)}x"),
        send(f"?secret={quote(secret)}"),
        send(Authorization=basic("openvolt", "wrong")),
        send(Authorization=basic(secret, "")),
        send(Authorization=f"Basic {secret}"),
        send(Authorization=f"Bearer {secret}"),
        send(**{"X-Token": secret}),
    ]:
        assert rejected.status_code == 401
    assert Event.objects.count() == 1


def test_database_outage_is_503_with_retry_after(client):
    source, (secret,) = make_source("gridx")
    with mock.patch(
        "receivers.lookup.find_source", side_effect=OperationalError("connection refused")
    ):
        response = post_signed(client, source, secret, gridx_body())
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0


MALFORMED_BODIES = {
    "invalid-utf8": b'{"id": "\xff\xfe", "type": "x"}',
    "json-array": b"[1, 2, 3]",
    "json-string": b'"appliance/online"',
    "json-null": b"null",
    "json-number": b"42",
    "empty": b"",
    "whitespace": b" \r\n",
    "truncated": b'{"id": "1", "type": ',
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "nested-but-parseable": b'{"id": "d-1", "_id": "d-1", "type": "x", "data": '
    + b"[" * 500
    + b"]" * 500
    + b"}",
    "many-digits": b'{"id": ' + b"9" * 5000 + b', "type": "x"}',
    "nan": b'{"id": "nan-1", "type": "x", "value": NaN}',
    "minus-infinity": b'{"id": "inf-2", "type": "x", "value": [1, {"v": -Infinity}]}',
    "escaped-nul-in-a-key": b'{"id": "k-1", "_id": "k-1", "type": "x", "a\\u0000": 1}',
    "raw-surrogate-bytes": b'{"id": "s-1", "_id": "s-1", "type": "x", "v": "\xed\xa0\x80"}',
    "infinity": b'{"id": "inf-1", "type": "x", "value": 1e999}',
    "nul-character": b'{"id": "a\\u0000b", "_id": "a\\u0000b", "type": "x\\u0000"}',
    "lone-surrogate": b'{"id": "\\ud800", "_id": "\\udfff", "type": "x"}',
    "bom": b'\xef\xbb\xbf{"id": "bom-1", "type": "x"}',
    "utf16": '{"id": "utf16-1", "type": "x"}'.encode("utf-16"),
    "year-one": b'{"id": "y-1", "_id": "y-1", "type": "x", "time": "0001-01-01T00:00:00+05:00"}',
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_body_is_never_a_410_or_500(client, provider, body):
    source = SourceFactory(provider=provider, verify_nothing=True)
    response = post(client, source, body)
    assert response.status_code in (200, 400), response.content
    assert Event.objects.count() == (1 if response.status_code == 200 else 0)


NOT_STORABLE = (
    "nan",
    "infinity",
    "minus-infinity",
    "nul-character",
    "escaped-nul-in-a-key",
    "lone-surrogate",
    "raw-surrogate-bytes",
)


@pytest.mark.parametrize("name", NOT_STORABLE)
def test_values_the_database_cannot_hold_are_refused(name):
    with pytest.raises(BadPayload, match="NaN, Infinity, NUL characters or unpaired surrogates"):
        load_json(MALFORMED_BODIES[name])


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "caf\\u00e9", "b": [1.5, -2e-3, 10], "c": {"d": null, "e": true}}',
        '{"a": "café", "b": "\u2603"}'.encode(),
        MALFORMED_BODIES["bom"],
        MALFORMED_BODIES["utf16"],
        b'{"big": 123456789012345678901234567890, "tiny": 1e-400}',
    ],
    ids=["ascii-escapes", "utf8", "bom", "utf16", "numbers"],
)
def test_a_storable_body_reads_as_json_loads_reads_it(body):
    assert load_json(body) == json.loads(body)


HUGE = "a" * 60_000
MALFORMED_HEADERS = {
    "huge": {
        "X-Signature": HUGE,
        "Authorization": HUGE,
        "edrv-signature": HUGE,
        "webhook-signature": HUGE,
        "webhook-id": HUGE,
        "webhook-timestamp": HUGE,
        "X-Acme-Signature": HUGE,
        "X-Acme-Timestamp": HUGE,
    },
    "many-digests": {"X-Signature": ", ".join(["sha512=00"] * 10_000)},
    "bad-hex": {"X-Signature": "sha512=zz", "edrv-signature": "t=1,v1=zz"},
    "bad-timestamps": {
        "edrv-signature": "t=" + "9" * 5000 + ",v1=00",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1e10",
        "webhook-signature": "v1,!!!",
    },
    "non-ascii-digits": {"webhook-id": "m", "webhook-timestamp": "١٢٣", "webhook-signature": "v1,"},
    "broken-basic": {"Authorization": "Basic !!!notbase64"},
    "binary-basic": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode()},
    "empty-values": {"X-Signature": "", "Authorization": "", "edrv-signature": ","},
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("headers", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
def test_malformed_credentials_are_401_not_500(client, provider, headers):
    source, _ = make_source(provider)
    response = client.post(
        f"/hooks/{source.slug}/",
        fixture_of(provider),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 401
    assert not Event.objects.exists()
