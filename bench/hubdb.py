"""The hub's rows for the benchmark, made with the hub's own ORM models in this process."""

from __future__ import annotations

import os

from bench.common import HUB_DB, SECRET, SOURCE_SLUG, hub_env

_ready = False


def setup() -> None:
    global _ready
    if _ready:
        return
    os.environ.update(hub_env("bench.settings"))
    import django

    django.setup()
    _ready = True


def migrate() -> None:
    setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    close()


def migrate_now() -> None:
    """Migrate in a fresh process: picks up migrations added since this run started (the
    tree may change while a long run goes on), which this process's loaded models cannot."""
    import subprocess

    from bench.common import PYTHON, REPO

    subprocess.run(
        [str(PYTHON), "manage.py", "migrate", "--no-input", "-v0"],
        cwd=REPO,
        env=hub_env("bench.settings"),
        check=True,
        timeout=300,
    )


def close() -> None:
    from django.db import connections

    connections.close_all()


def create_source() -> None:
    setup()
    from receivers.models import Source, SourceSecret

    source, _ = Source.objects.get_or_create(slug=SOURCE_SLUG, defaults={"provider": "gridx"})
    if not SourceSecret.objects.filter(source=source, value=SECRET).exists():
        SourceSecret.objects.create(source=source, value=SECRET)
    close()


def set_subscriptions(urls: dict[str, str], timeout_seconds: int, **options) -> None:
    """Exactly these subscriptions (name -> url), every event type, healthy and unleased;
    `options` (energy options, docs/energy.md) are set on each."""
    setup()
    from subscriptions.models import Subscription

    Subscription.objects.all().delete()
    for name, url in urls.items():
        Subscription.objects.create(
            name=name, url=url, event_types=["*"], timeout_seconds=timeout_seconds, **options
        )
    close()


def create_subscription(name: str, url: str, event_types: list[str], **fields) -> int:
    setup()
    from subscriptions.models import Subscription

    sub = Subscription.objects.create(name=name, url=url, event_types=event_types, **fields)
    close()
    return sub.pk


def delete_subscriptions() -> None:
    setup()
    from subscriptions.models import Subscription

    Subscription.objects.all().delete()
    close()


def set_paused(name: str, paused: bool) -> None:
    """Pause a subscription, or resume it as an operator would (its drain is requested)."""
    setup()
    from subscriptions.models import Subscription
    from subscriptions.services import controls

    subscriptions = Subscription.objects.filter(name=name)
    if paused:
        controls.pause(subscriptions)
    else:
        controls.resume(subscriptions)
    close()


def status_counts() -> dict[str, int]:
    """Deliveries by status."""
    from bench.common import sql

    table = "subscriptions_delivery"
    rows = sql(HUB_DB, f"SELECT status, count(*) FROM {table} GROUP BY status")[0]
    return {status: int(n) for status, n in rows}


def clear_events() -> None:
    """Forget every event, delivery and attempt (the subscriptions stay, reset to healthy)."""
    setup()
    from django.db import connection

    from receivers.models import Event
    from subscriptions.models import Attempt, Delivery, Subscription

    tables = [Attempt._meta.db_table, Delivery._meta.db_table, Event._meta.db_table]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    Subscription.objects.update(
        lease_until=None,
        backoff_until=None,
        consecutive_failures=0,
        failing_since=None,
        last_failure_at=None,
        last_success_at=None,
        is_active=True,
        disabled_at=None,
        disabled_reason="",
    )
    close()


def counts() -> dict[str, int]:
    setup()
    from bench.baselines.models import TextbookEvent
    from receivers.models import Event
    from subscriptions.models import Delivery, DeliveryStatus

    out = {
        "events": Event.objects.count(),
        "textbook_events": TextbookEvent.objects.count(),
        "deliveries": Delivery.objects.count(),
        "succeeded": Delivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count(),
    }
    close()
    return out
