"""An eighth provider, defined and registered here: the shared suite covers it unchanged.

Thermo is a made-up heat-pump cloud that signs `<t>.<raw body>` with HMAC-SHA256 in a
`Thermo-Signature: t=<unix seconds>,v1=<hex>` header. Besides this module there is only its
fixtures folder (receivers/tests/fixtures/thermo/): test_providers.py and
test_receive_endpoint.py read their tables from the registry and the class, so they run every
shared case for it. This module's name sorts before theirs, so it is imported, and the
provider registered, before they are collected.
"""

from datetime import datetime
from typing import Any

import pytest

from receivers.models import Source
from receivers.providers import get_provider, register
from receivers.providers.base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    SourceOptions,
    VerificationFailed,
    decode_hex,
    hmac_digest,
    matches_any,
    read_envelope,
    unix_time,
    within_tolerance,
)

HEADER = "Thermo-Signature"


class Thermo(Provider):
    name = "thermo"
    label = "Thermo (test provider)"
    signs_timestamp = True
    secret_headers = (HEADER,)

    def verify(
        self,
        incoming: Incoming,
        secrets: list[str],
        source: SourceOptions,
        now: datetime | None = None,
    ) -> None:
        parts = dict(
            p.strip().partition("=")[::2] for p in incoming.headers.get(HEADER, "").split(",")
        )
        seconds = unix_time(parts.get("t", ""))
        digest = decode_hex(parts.get("v1", ""))
        if seconds is None or not digest:
            raise VerificationFailed(f"no t= and v1= in {HEADER}")
        if not within_tolerance(seconds, now, source.tolerance_seconds):
            raise VerificationFailed("the signed timestamp is outside the tolerance")
        content = f"{parts['t']}.".encode() + incoming.body
        expected = [hmac_digest(secret.encode(), content, "sha256") for secret in secrets]
        if not matches_any([digest], expected):
            raise VerificationFailed("no signature matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        return read_envelope(payload, "Thermo", ("eventId",), ("kind",), ("occurredAt",))

    def sign(self, body: bytes, secret: str, source: SourceOptions, now: datetime) -> SignedRequest:
        t = int(now.timestamp())
        digest = hmac_digest(secret.encode(), f"{t}.".encode() + body, "sha256").hex()
        return SignedRequest(headers={HEADER: f"t={t},v1={digest}"})


register(Thermo())


@pytest.mark.django_db
def test_a_source_of_the_added_provider_needs_no_migration(api):
    Source(slug="heat", provider="thermo").full_clean()
    created = api.post("/api/v1/sources/", {"slug": "heat", "provider": "thermo"}, format="json")
    assert created.status_code == 201
    assert created.json()["receive_url"].endswith("/hooks/heat/")


def test_the_registry_hands_out_the_added_provider():
    assert isinstance(get_provider("thermo"), Thermo)
