"""Every fixture of every provider goes sign -> POST -> one stored Event, and every provider
gets the same negative cases. The tables below are read from the provider classes, so a new
provider is covered by its module, its registry entry and its fixtures folder alone.

The expected id, type and time are read from the fixtures with the field names PROVIDERS.md
documents, independently of the provider modules; the known-answer tests build each
platform's headers by hand, so sign() and verify() cannot agree on a mistake.
"""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks import Webhook

from receivers.models import Event, EventStatus, Source
from receivers.providers import PROVIDERS, get_provider
from receivers.providers.base import (
    CaseInsensitiveDict,
    Incoming,
    SignedRequest,
    VerificationFailed,
    parse_time,
)
from receivers.services import UNAUTHORIZED
from receivers.tests.factories import (
    HMAC_OPTIONS,
    PROVIDER_OPTIONS,
    SecretFactory,
    SourceFactory,
    make_source,
)
from receivers.tests.webhooks import (
    fixture_id,
    fixture_of,
    new_secret,
    post,
    registered_fixtures,
    sign,
)

FIXTURES = registered_fixtures()
NAMES = sorted(PROVIDERS)

# From the classes: whether a signature covers the body (Jedlix and Openvolt authenticate the
# sender only, so a tampered body cannot be caught) and whether a signed timestamp is checked.
SIGNS_BODY = [name for name in NAMES if PROVIDERS[name].signs_body]
CREDENTIAL_ONLY = [name for name in NAMES if not PROVIDERS[name].signs_body]
TIMESTAMPED = [name for name in NAMES if PROVIDERS[name].signs_timestamp]
TEST_FIXTURES = {"gridx/ping", "jedlix/test-message"}

# Where PROVIDERS.md puts the unique id, the type and the time of each platform's events.
DOCUMENTED_FIELDS = {
    "gridx": (("id",), ("type",), ("time",)),
    "jedlix": (("id",), ("eventType",), ("timestamp",)),
    "openvolt": (("delivery_id",), ("event_id",), ("event_timestamp",)),
    "ideavate": (("webhook", "id"), ("webhook", "trigger"), ("webhook", "date")),
    "edrv": (("_id",), ("type",), ("createdAt",)),
}
GENERIC_TYPE_FIELDS = {
    "standard": ("type", "event", "eventType"),
    "hmac": ("type", "event", "eventType", "event_type"),
}
HMAC_ID_FIELDS = ("id", "event_id", "eventId", "uuid")


def credential_header(source: Source, signed: SignedRequest) -> str | None:
    """The header that carries a credential or signature in this request (stored masked)."""
    sent = {name.lower() for name in signed.headers}
    named = [h.lower() for h in get_provider(source.provider).credential_headers(source)]
    return next((name for name in named if name in sent), None)


def field(payload, path: tuple[str, ...]):
    for key in path:
        payload = payload.get(key) if isinstance(payload, dict) else None
    return payload


def first_present(payload: dict, names: tuple[str, ...]):
    return next((str(payload[n]) for n in names if payload.get(n) not in (None, "")), None)


def expected_event(provider: str, body: bytes, signed: SignedRequest) -> dict:
    payload = json.loads(body)
    if provider in DOCUMENTED_FIELDS:
        id_path, type_path, time_path = DOCUMENTED_FIELDS[provider]
        return {
            "external_id": str(field(payload, id_path)),
            "type": field(payload, type_path),
            "occurred_at": parse_time(field(payload, time_path)),
        }
    if provider not in GENERIC_TYPE_FIELDS:
        # A provider without a table here: what its own parse() reads is what must be stored.
        parsed = get_provider(provider).parse(payload, Incoming(body, CaseInsensitiveDict()))
        return {"external_id": parsed.external_id, "type": parsed.type}
    event_type = first_present(payload, GENERIC_TYPE_FIELDS[provider]) or "unknown"
    if provider == "standard":
        return {"external_id": signed.headers["webhook-id"], "type": event_type}
    external_id = first_present(payload, HMAC_ID_FIELDS) or hashlib.sha256(body).hexdigest()
    return {"external_id": external_id, "type": event_type}


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", FIXTURES, ids=fixture_id)
def test_fixture_is_received_and_stored(client, fixture):
    provider = fixture.parent.name
    source, (secret,) = make_source(provider)
    body = fixture.read_bytes()
    signed = sign(source, body, secret)

    response = post(client, source, body, signed)

    assert response.status_code == 200
    if provider == "edrv":
        assert response.content == b""
    else:
        assert response.json() == {"received": True, "duplicate": False}
    event = Event.objects.get()
    expected = expected_event(provider, body, signed)
    for name, value in expected.items():
        assert getattr(event, name) == value, name
    is_test = fixture_id(fixture) in TEST_FIXTURES
    assert event.is_test is is_test
    if is_test:
        assert event.status == EventStatus.IGNORED
    assert bytes(event.raw_body) == body
    assert event.payload == json.loads(body)
    credential = credential_header(source, signed)
    if credential:
        assert event.headers[credential] == "****"
    assert secret not in json.dumps(event.headers)


def test_every_provider_is_in_the_negative_tables():
    # Read at collection: a provider registered later than that would be left out.
    assert sorted(SIGNS_BODY + CREDENTIAL_ONLY) == sorted(PROVIDERS)
    assert {path.parent.name for path in FIXTURES} == set(PROVIDERS)


# --- the shared negative cases ----------------------------------------------------------


def assert_rejected(response) -> None:
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED.body
    assert not Event.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("provider", SIGNS_BODY)
def test_tampered_body_is_rejected(client, provider):
    source, (secret,) = make_source(provider)
    body = fixture_of(provider)
    signed = sign(source, body, secret)
    # The same JSON in other bytes (padded, re-serialised) fails too: the exact bytes are signed.
    assert_rejected(post(client, source, b" " + body, signed))
    assert_rejected(post(client, source, json.dumps(json.loads(body)).encode(), signed))
    changed = {**json.loads(body), "tampered": True}
    assert_rejected(post(client, source, json.dumps(changed).encode(), signed))


@pytest.mark.django_db
@pytest.mark.parametrize("provider", NAMES)
def test_wrong_secret_is_rejected(client, provider):
    source, _ = make_source(provider)
    body = fixture_of(provider)
    assert_rejected(post(client, source, body, sign(source, body, new_secret(provider))))


@pytest.mark.django_db
@pytest.mark.parametrize("provider", NAMES)
def test_missing_signature_or_credentials_is_rejected(client, provider):
    source, _ = make_source(provider)
    assert_rejected(post(client, source, fixture_of(provider)))


@pytest.mark.django_db
@pytest.mark.parametrize("provider", TIMESTAMPED)
@pytest.mark.parametrize("direction", [-1, 1], ids=["past", "future"])
def test_stale_timestamp_is_rejected(client, provider, direction):
    source, (secret,) = make_source(provider, tolerance_seconds=180)
    body = fixture_of(provider)
    stale = timezone.now() + direction * timedelta(seconds=180 + 30)
    assert_rejected(post(client, source, body, sign(source, body, secret, now=stale)))

    almost = timezone.now() + direction * timedelta(seconds=180 - 30)
    assert post(client, source, body, sign(source, body, secret, now=almost)).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("provider", NAMES)
def test_either_secret_verifies_during_a_rotation(client, provider):
    source, (old, new) = make_source(provider, secrets=2)
    for index, secret in enumerate((old, new)):
        body = fixture_of(provider, index)
        assert post(client, source, body, sign(source, body, secret)).status_code == 200
    assert Event.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("matching_first", [True, False])
def test_gridx_header_with_two_digests_verifies_when_one_matches(client, matching_first):
    source, (secret,) = make_source("gridx")
    body = fixture_of("gridx")
    good = sign(source, body, secret).headers["X-Signature"]
    bad = sign(source, body, new_secret("gridx")).headers["X-Signature"]
    header = f"{good}, {bad}" if matching_first else f"{bad}, {good}"
    assert post(client, source, body, SignedRequest({"X-Signature": header})).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("provider", NAMES)
def test_expired_secret_no_longer_verifies(client, provider):
    source, _ = make_source(provider)
    now = timezone.now()
    expired = SecretFactory(
        source=source, value=new_secret(provider), expires_at=now - timedelta(minutes=1)
    )
    in_grace = SecretFactory(
        source=source, value=new_secret(provider), expires_at=now + timedelta(hours=1)
    )
    body = fixture_of(provider)
    assert_rejected(post(client, source, body, sign(source, body, expired.plaintext)))
    assert post(client, source, body, sign(source, body, in_grace.plaintext)).status_code == 200


@pytest.mark.django_db
def test_every_failure_answers_the_same_401(client):
    answers = []
    for provider in NAMES:
        source, (secret,) = make_source(provider, tolerance_seconds=60)
        body = fixture_of(provider)
        answers.append(post(client, source, body))
        answers.append(post(client, source, body, sign(source, body, new_secret(provider))))
        if provider in SIGNS_BODY:
            answers.append(post(client, source, b" " + body, sign(source, body, secret)))
        if provider in TIMESTAMPED:
            stale = timezone.now() - timedelta(hours=1)
            answers.append(post(client, source, body, sign(source, body, secret, now=stale)))
        walled, (secret,) = make_source(provider, allowed_ips="192.0.2.0/24")
        answers.append(post(client, walled, body, sign(walled, body, secret)))
        without_secret = SourceFactory(provider=provider, **PROVIDER_OPTIONS.get(provider, {}))
        answers.append(post(client, without_secret, body, sign(without_secret, body, secret)))
    # Never a hint of which part failed: status, content type and body are all the same.
    assert {(r.status_code, r["Content-Type"], r.content) for r in answers} == {
        (401, "application/json", json.dumps(UNAUTHORIZED.body).encode())
    }
    assert not Event.objects.exists()


# --- known answers: headers built by hand from PROVIDERS.md, not by sign() -------------------

KEY = "whsec_known-answer-secret-0001"


def hex_hmac(algorithm: str, content: bytes, key: str = KEY) -> str:
    return hmac.new(key.encode(), content, algorithm).hexdigest()


def incoming(body: bytes, headers: dict[str, str], query: dict[str, str] | None = None):
    return Incoming(body=body, headers=CaseInsensitiveDict(headers), query=query or {})


def known_answers(body: bytes, now: int) -> dict[str, list]:
    basic = base64.b64encode(f"openvolt:{KEY}".encode()).decode()
    dotted = f"{now}.".encode() + body
    return {
        "gridx": [{"X-Signature": "sha512=" + hex_hmac("sha512", body)}],
        "jedlix": [{"Authorization": f"Basic {KEY}"}],
        "openvolt": [({}, {"token": KEY}), {"Authorization": f"Basic {basic}"}],
        "ideavate": [{"X-Signature": hex_hmac("sha1", body)}],
        "edrv": [{"edrv-signature": f"t={now},v1={hex_hmac('sha256', dotted)}"}],
        "hmac": [
            {
                "X-Acme-Timestamp": str(now),
                "X-Acme-Signature": "sha256="
                + base64.b64encode(hmac.new(KEY.encode(), dotted, "sha256").digest()).decode(),
            }
        ],
    }


@pytest.mark.parametrize("provider", ["edrv", "gridx", "hmac", "ideavate", "jedlix", "openvolt"])
def test_known_answer_verifies(provider):
    body = fixture_of(provider)
    now = timezone.now()
    source = Source(provider=provider, **(HMAC_OPTIONS if provider == "hmac" else {}))
    for case in known_answers(body, int(now.timestamp()))[provider]:
        headers, query = case if isinstance(case, tuple) else (case, {})
        stored = get_provider(provider).stored_secret(KEY)
        get_provider(provider).verify(incoming(body, headers, query), [stored], source, now=now)


# The Standard Webhooks test vector from PROVIDERS.md.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_HEADERS = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_TIME = datetime.fromtimestamp(1614265330, tz=UTC)


def test_standard_verifies_the_specification_test_vector():
    source = Source(provider="standard", tolerance_seconds=300)
    standard = get_provider("standard")
    standard.verify(incoming(VECTOR_BODY, VECTOR_HEADERS), [VECTOR_SECRET], source, now=VECTOR_TIME)
    # Within five minutes either way, and not beyond.
    for offset in (-300, 300):
        later = VECTOR_TIME + timedelta(seconds=offset)
        standard.verify(incoming(VECTOR_BODY, VECTOR_HEADERS), [VECTOR_SECRET], source, now=later)
    for offset in (-301, 301):
        later = VECTOR_TIME + timedelta(seconds=offset)
        with pytest.raises(VerificationFailed):
            standard.verify(
                incoming(VECTOR_BODY, VECTOR_HEADERS), [VECTOR_SECRET], source, now=later
            )
    with pytest.raises(VerificationFailed):
        standard.verify(
            incoming(VECTOR_BODY + b" ", VECTOR_HEADERS), [VECTOR_SECRET], source, now=VECTOR_TIME
        )


def test_standard_vector_verifies_with_the_clock_frozen(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: VECTOR_TIME)
    source = Source(provider="standard", tolerance_seconds=300)
    get_provider("standard").verify(incoming(VECTOR_BODY, VECTOR_HEADERS), [VECTOR_SECRET], source)


def test_standard_signs_what_the_standardwebhooks_package_verifies():
    source = Source(provider="standard")
    body = fixture_of("standard")
    now = timezone.now()
    signed = sign(source, body, VECTOR_SECRET, now=now)
    webhook = Webhook(VECTOR_SECRET)
    assert webhook.verify(body, signed.headers) == json.loads(body)
    expected = webhook.sign(signed.headers["webhook-id"], now, body.decode())
    assert signed.headers["webhook-signature"] == expected


def ed25519_pair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whsk_" + base64.b64encode(seed).decode(), "whpk_" + base64.b64encode(public).decode()


@pytest.mark.django_db
def test_standard_v1a_ed25519_is_verified_with_the_public_key(client):
    private, public = ed25519_pair()
    source = SourceFactory(provider="standard")
    SecretFactory(source=source, value=public)
    body = fixture_of("standard")

    signed = sign(source, body, private)
    assert signed.headers["webhook-signature"].startswith("v1a,")
    assert post(client, source, body, signed).status_code == 200

    other_private, _ = ed25519_pair()
    assert post(client, source, body + b" ", sign(source, body, private)).status_code == 401
    assert post(client, source, body, sign(source, body, other_private)).status_code == 401


def test_standard_accepts_any_listed_signature():
    source = Source(provider="standard")
    body = fixture_of("standard")
    now = timezone.now()
    good = sign(source, body, VECTOR_SECRET, now=now).headers
    private, public = ed25519_pair()
    v1a = sign(source, body, private, now=now).headers["webhook-signature"]
    headers = {**good, "webhook-signature": f"v1,bm90IGl0 v2,abc {v1a} {good['webhook-signature']}"}
    standard = get_provider("standard")
    standard.verify(incoming(body, headers), [VECTOR_SECRET], source, now=now)
    standard.verify(incoming(body, headers), [public], source, now=now)


@pytest.mark.parametrize(
    "unit, content",
    [
        ("seconds", "dotted"),
        ("milliseconds", "dotted"),
        ("seconds", "body"),
        ("milliseconds", "body"),
    ],
)
def test_edrv_accepts_both_signed_strings_and_both_time_units(unit, content):
    body = fixture_of("edrv")
    now = timezone.now()
    t = int(now.timestamp()) * (1000 if unit == "milliseconds" else 1)
    signed = f"{t}.".encode() + body if content == "dotted" else body
    header = {"edrv-signature": f"t={t},v1={hex_hmac('sha256', signed)}"}
    source = Source(provider="edrv", tolerance_seconds=180)
    edrv = get_provider("edrv")
    edrv.verify(incoming(body, header), [KEY], source, now=now)
    with pytest.raises(VerificationFailed):
        edrv.verify(incoming(body, header), [KEY], source, now=now + timedelta(minutes=4))


HMAC_CONFIGS = {
    "github-like": ("X-Hub-Signature-256", "sha256", "hex", "sha256=", "{body}"),
    "sha1-base64": ("X-Signature", "sha1", "base64", "", "{body}"),
    "sha512-timestamped": ("Signature", "sha512", "hex", "", "{header:X-Timestamp}:{body}"),
}


@pytest.mark.parametrize("config", HMAC_CONFIGS.values(), ids=HMAC_CONFIGS.keys())
def test_generic_hmac_follows_the_source_options(config):
    header, algorithm, encoding, prefix, template = config
    source = Source(
        provider="hmac",
        hmac_header=header,
        hmac_algorithm=algorithm,
        hmac_encoding=encoding,
        hmac_prefix=prefix,
        hmac_template=template,
    )
    body = fixture_of("hmac")
    now = timezone.now()
    headers = {"X-Timestamp": "1772438400"}
    content = template.replace("{header:X-Timestamp}", "1772438400").encode()
    content = content.replace(b"{body}", body)
    digest = hmac.new(KEY.encode(), content, algorithm).digest()
    encoded = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    headers[header] = prefix + encoded
    provider = get_provider("hmac")
    provider.verify(incoming(body, headers), [KEY], source, now=now)

    signed = provider.sign(body, KEY, source, now)
    provider.verify(incoming(body, signed.headers), [KEY], source, now=now)
    with pytest.raises(VerificationFailed):
        provider.verify(incoming(body + b"\n", headers), [KEY], source, now=now)


def test_generic_hmac_without_a_header_configured_never_verifies():
    source = Source(provider="hmac", hmac_header="")
    body = fixture_of("hmac")
    with pytest.raises(VerificationFailed):
        get_provider("hmac").verify(incoming(body, {}), [KEY], source)


@pytest.mark.parametrize(
    "sent, accepted",
    [
        ("{now}", True),
        ("{now}000", True),  # milliseconds
        ("{old}", False),
        ("{soon}", False),
        ("", False),
        ("yesterday", False),
        ("-1", False),
    ],
)
def test_generic_hmac_timestamp_must_be_within_the_tolerance(sent, accepted):
    source = Source(
        provider="hmac",
        hmac_header="X-Sig",
        hmac_template="{header:X-Time}.{body}",
        hmac_timestamp_header="X-Time",
        tolerance_seconds=300,
    )
    now = timezone.now()
    value = sent.format(
        now=int(now.timestamp()),
        old=int(now.timestamp()) - 301,
        soon=int(now.timestamp()) + 301,
    )
    body = fixture_of("hmac")
    digest = hmac.new(KEY.encode(), value.encode() + b"." + body, "sha256").hexdigest()
    headers = {"X-Sig": digest, **({"X-Time": value} if value else {})}
    provider = get_provider("hmac")
    if accepted:
        provider.verify(incoming(body, headers), [KEY], source, now=now)
    else:
        with pytest.raises(VerificationFailed):
            provider.verify(incoming(body, headers), [KEY], source, now=now)


def test_a_timestamp_header_outside_the_signed_template_is_refused_as_an_option():
    unsigned = Source(
        slug="acme", provider="hmac", hmac_header="X-Sig", hmac_timestamp_header="X-Time"
    )
    with pytest.raises(ValidationError) as refused:
        unsigned.clean()
    assert "{header:X-Time}" in str(refused.value)
    Source(
        slug="acme",
        provider="hmac",
        hmac_header="X-Sig",
        hmac_template="{header:x-time}.{body}",
        hmac_timestamp_header="X-Time",
    ).clean()


def test_jedlix_key_is_sent_raw_not_as_base64_credentials():
    body = fixture_of("jedlix")
    source = Source(provider="jedlix")
    encoded = base64.b64encode(f"user:{KEY}".encode()).decode()
    stored = get_provider("jedlix").stored_secret(KEY)
    with pytest.raises(VerificationFailed):
        get_provider("jedlix").verify(
            incoming(body, {"Authorization": f"Basic {encoded}"}), [stored], source
        )
    with pytest.raises(VerificationFailed):
        get_provider("jedlix").verify(
            incoming(body, {"Authorization": f"Bearer {KEY}"}), [stored], source
        )
