"""Fixtures for the admin tests: sources, events, deliveries and a local HTTP receiver."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.utils import timezone

from receivers.models import Event, EventStatus, Source
from receivers.sources import create_source
from subscriptions.models import Attempt, Delivery, DeliveryStatus, Subscription

_numbers = itertools.count(1)


class Receiver:
    """A subscriber on 127.0.0.1 that answers the queued statuses, then 200."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""


@pytest.fixture(autouse=True)
def _empty_cache():
    """The dashboard caches finished hours; every test starts from an empty cache."""
    cache.clear()


@pytest.fixture
def receiver():
    target = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            target.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = target.statuses.pop(0) if target.statuses else 200
            answer = json.dumps({"ok": status < 300, "status": status}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    target.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield target
    server.shutdown()
    server.server_close()


def make_source(slug: str | None = None, provider: str = "gridx", **options) -> Source:
    source, _ = create_source(slug or f"source-{next(_numbers)}", provider, **options)
    return source


def make_event(source: Source, **fields) -> Event:
    number = next(_numbers)
    payload = fields.pop("payload", {"id": f"evt-{number}", "type": "appliance/online"})
    defaults = {
        "external_id": f"evt-{number}",
        "type": "appliance/online",
        "received_at": timezone.now(),
        "headers": {"content-type": "application/json", "x-signature": "****"},
        "raw_body": json.dumps(payload).encode(),
        "payload": payload,
        "status": EventStatus.DISPATCHED,
    }
    return Event.objects.create(source=source, **{**defaults, **fields})


def make_subscription(url: str = "http://127.0.0.1:9/hook", **fields) -> Subscription:
    defaults = {"name": f"subscriber {next(_numbers)}", "url": url, "event_types": ["*"]}
    return Subscription.objects.create(**{**defaults, **fields})


def make_delivery(
    event: Event, sub: Subscription, status: str = DeliveryStatus.FAILED, codes=(500,)
) -> Delivery:
    delivery = Delivery.objects.create(
        event=event,
        subscription=sub,
        status=status,
        webhook_id=f"msg_{next(_numbers):08d}",
        attempt_count=len(codes),
        last_status_code=codes[-1] if codes else None,
    )
    for code in codes:
        Attempt.objects.create(
            delivery=delivery, status_code=code, duration_ms=12, response_excerpt="oops"
        )
    return delivery


def staff_user(username: str, *permissions: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


@pytest.fixture
def source(db) -> Source:
    return make_source("gridx-prod")


@pytest.fixture
def subscription(db, receiver) -> Subscription:
    return make_subscription(receiver.url, name="billing")


@pytest.fixture
def failed_delivery(source, subscription) -> Delivery:
    return make_delivery(make_event(source), subscription)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def helpers():
    """The module-level helpers, for tests (conftest modules are not importable by name)."""

    class Helpers:
        make_source = staticmethod(make_source)
        make_event = staticmethod(make_event)
        make_subscription = staticmethod(make_subscription)
        make_delivery = staticmethod(make_delivery)
        staff_user = staticmethod(staff_user)
        messages = staticmethod(messages_of)

    return Helpers
