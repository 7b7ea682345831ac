"""What platforms send, for the receive tests: captured-shape fixtures, signed as the platform
would sign them, posted to the hub. (A support module: no tests here.)"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from django.utils import timezone

from receivers.models import Source, generate_secret
from receivers.providers import PROVIDERS, get_provider
from receivers.providers.base import SignedRequest

FIXTURES_DIR = Path(__file__).parent / "fixtures"

GRIDX_EVENT = {
    "id": "9a8b7c6d-0000-4000-8000-000000000001",
    "specVersion": "1.0",
    "source": "/systems/s-1",
    "time": "2026-03-02T08:15:30Z",
    "data": {},
}


def gridx_body(**fields) -> bytes:
    return json.dumps({**GRIDX_EVENT, "type": "appliance/online", **fields}).encode()


def registered_fixtures() -> list[Path]:
    """Every fixture of every registered provider: receivers/tests/fixtures/<name>/*.json."""
    return sorted(path for name in PROVIDERS for path in (FIXTURES_DIR / name).glob("*.json"))


def fixture_of(provider: str, index: int = 0) -> bytes:
    return sorted((FIXTURES_DIR / provider).glob("*.json"))[index].read_bytes()


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def new_secret(provider: str) -> str:
    # The hub's own generator: its secrets must also load in Standard Webhooks libraries.
    return generate_secret()


def sign(source: Source, body: bytes, secret: str, now: datetime | None = None) -> SignedRequest:
    return get_provider(source.provider).sign(body, secret, source, now or timezone.now())


def post(client, source: Source, body: bytes, signed: SignedRequest | None = None, path="", **meta):
    url = f"/hooks/{source.slug}/{path}"
    if signed is not None and signed.query:
        url += "?" + urlencode(signed.query)
    headers = signed.headers if signed is not None else {}
    return client.post(url, body, content_type="application/json", headers=headers, **meta)
