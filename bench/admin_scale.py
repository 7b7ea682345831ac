"""The admin at scale: every event-list page under 500 ms with a million events in PostgreSQL.

Seeds a database of its own (hub_bench_admin by default) with INSERT ... SELECT generate_series,
then times, with a logged-in Django test Client in this process, the event list, each filter,
the search by event id, the search inside payloads (admin and API), and (for information) the
delivery list, an event page and the dashboard. Prints the median milliseconds of each page with
PASS/FAIL against the budget.

    .venv/bin/python bench/admin_scale.py                 # 1,000,000 events
    .venv/bin/python bench/admin_scale.py --rows 200000 --explain

Exit code 0 when every required page (the event list, its filters, the search) is within the
budget, 1 otherwise. The seed is kept between runs and redone only when --rows changes or with
--reseed. BENCH_QUICK=1 (set by bench/run.py --quick) makes the default 100,000 rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/hub_bench_admin"
BUDGET_MS = 500
SOURCES = ["gridx-prod", "edrv-fleet", "jedlix-eu", "openvolt-meters", "ideavate-switch", "idle"]
# Share of the events per source, in percent: one busy source, a few small ones, one idle.
SOURCE_SHARE = [55, 25, 12, 6, 2, 0]
TYPES = [
    "appliance/online",
    "appliance/offline",
    "appliance/update",
    "ev/measurement",
    "ev/plugged",
    "ev/unplugged",
    "ev/charge-started",
    "ev/charge-stopped",
    "gateway/online",
    "gateway/offline",
    "inverter/status",
    "system/action",
    "session.started",
    "session.updated",
    "session.ended",
    "chargestation.online",
    "meter_data.received",
    "userCreated",
    "EnergySwitchAdded",
]
RARE_TYPE = "ev/infeasible-charging-goals"  # one event in 10,000
SUBSCRIPTIONS = ["billing", "analytics", "crm"]
# Every event names one of DEVICES appliances (data.applianceID, a uuid): about rows / DEVICES
# events per device; one event names RARE_DEVICE, which nothing else names.
DEVICES = 2000
RARE_DEVICE = "fc0a0000-0000-4000-8000-00000000beef"


def parse_args(argv: list[str]) -> argparse.Namespace:
    quick = os.environ.get("BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000 if quick else 1_000_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ADMIN_SCALE_DATABASE_URL", DEFAULT_URL),
        help=f"PostgreSQL database to seed and read (default {DEFAULT_URL}).",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page")
    parser.add_argument("--budget-ms", type=int, default=BUDGET_MS)
    parser.add_argument("--reseed", action="store_true", help="seed again even if it fits")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest query")
    return parser.parse_args(argv)


# Database -----------------------------------------------------------------------------------


def configure(database_url: str) -> None:
    """Settings from the environment, as the hub reads them, pointed at the bench database."""
    sys.path.insert(0, str(REPO))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hub.settings",
            "DATABASE_URL": database_url,
            "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
            "DEBUG": "0",
            "CELERY_BROKER_URL": "memory://",
            "LOG_LEVEL": "WARNING",
        }
    )
    os.environ.setdefault("SECRET_KEY", "bench-only-admin-scale-key")
    os.environ.setdefault("HUB_SECRET_KEYS", "dH6lXysm866mA5lLsxxRtjSkmQI3vxIEtsNxH_Ryy9Y=")


def ensure_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            say(f"creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


def say(text: str) -> None:
    print(f"[admin_scale] {text}", flush=True)


def seeded_rows() -> int:
    """The events seeded, or -1 for a seed of an older shape (no device ids in payloads)."""
    from receivers.models import Event

    if not Event.objects.filter(payload__data__has_key="applianceID").exists():
        return -1
    return Event.objects.count()


def device(number: int) -> str:
    """The appliance id the seed gives events numbered `number` modulo DEVICES (as SQL does)."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.md5(f"device-{number % DEVICES}".encode()).hexdigest()))


def seed(rows: int) -> None:
    """A week of events, deliveries for a quarter of them, an attempt per delivery."""
    from django.db import connection
    from django.utils import timezone

    from receivers.models import Source
    from subscriptions.models import Subscription

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE subscriptions_attempt, subscriptions_delivery, receivers_event, "
            "receivers_sourcesecret, subscriptions_subscription_sources, "
            "subscriptions_subscription, receivers_source RESTART IDENTITY CASCADE"
        )
    source_ids = [Source.objects.create(slug=slug, provider="gridx").pk for slug in SOURCES]
    sub_ids = [
        Subscription.objects.create(name=name, url=f"https://{name}.example.com/hook").pk
        for name in SUBSCRIPTIONS
    ]
    # Pick the source by the row number's percentile, following SOURCE_SHARE. The statements
    # below take no parameters, so `%` is SQL's modulo and nothing else.
    bounds, total = [], 0
    for source_id, share in zip(source_ids, SOURCE_SHARE, strict=True):
        if share:
            total += share
            bounds.append(f"WHEN g % 100 < {total} THEN {source_id}")
    source_case = "CASE " + " ".join(bounds) + f" ELSE {source_ids[0]} END"
    types = "ARRAY[" + ",".join(f"'{t}'" for t in TYPES) + "]"
    seconds = 7 * 86400 - 600
    say(f"seeding {rows:,} events (INSERT ... SELECT generate_series)")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO receivers_event (source_id, external_id, type, occurred_at, received_at,
                headers, raw_body, payload, is_test, status, duplicates)
            SELECT {source_case},
                   'evt-' || lpad(g::text, 9, '0'),
                   CASE WHEN g % 10000 = 5000 THEN '{RARE_TYPE}'
                        ELSE ({types})[1 + (g::bigint * 7919) % {len(TYPES)}] END,
                   ts, ts,
                   '{{"content-type": "application/json", "x-signature": "****"}}'::jsonb,
                   convert_to(jsonb_build_object('id', 'evt-' || g, 'data',
                       jsonb_build_object('n', g, 'applianceID', dev))::text, 'UTF8'),
                   jsonb_build_object('id', 'evt-' || g, 'data',
                       jsonb_build_object('n', g, 'applianceID', dev)),
                   g % 200 = 0,
                   CASE WHEN g % 200 = 0 THEN 'ignored'
                        WHEN g % 5000 = 1 THEN 'pending'
                        ELSE 'dispatched' END,
                   0
            FROM generate_series(1, {int(rows)}) AS g,
                 LATERAL (SELECT now() - make_interval(secs => {seconds}.0 * g / {int(rows)}))
                 AS t(ts),
                 LATERAL (SELECT CASE WHEN g = {int(rows) // 3} THEN '{RARE_DEVICE}'
                     ELSE md5('device-' || g % {DEVICES})::uuid::text END) AS d(dev)
            """
        )
        say("seeding deliveries and attempts for a quarter of the events")
        cursor.execute(
            f"""
            INSERT INTO subscriptions_delivery (event_id, subscription_id, status, webhook_id,
                attempt_count, next_attempt_at, replay_requested, last_status_code, last_error,
                created_at, delivered_at, order_key, coalesce_key)
            SELECT e.id, (ARRAY{sub_ids})[1 + e.id % {len(sub_ids)}],
                   CASE WHEN e.id % 50 = 0 THEN 'failed'
                        WHEN e.id % 400 = 4 THEN 'retrying'
                        ELSE 'succeeded' END,
                   'msg_' || md5(e.id::text), 1, e.received_at, false,
                   CASE WHEN e.id % 50 = 0 OR e.id % 400 = 4 THEN 500 ELSE 200 END, '',
                   e.received_at, e.received_at, '', ''
            FROM receivers_event e
            WHERE e.id % 4 = 0 AND e.status = 'dispatched'
            """
        )
        cursor.execute(
            """
            INSERT INTO subscriptions_attempt (delivery_id, started_at, status_code,
                duration_ms, response_excerpt, error, is_replay)
            SELECT d.id, d.created_at + interval '1 second', d.last_status_code, 40,
                   '{"ok": true}', '', false
            FROM subscriptions_delivery d
            """
        )
    # Statistics, and the visibility map for index-only scans, as autovacuum would leave them.
    with connection.cursor() as cursor:
        for table in ("receivers_event", "subscriptions_delivery", "subscriptions_attempt"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    say(f"seeded in {time.monotonic() - started:.0f} s (at {timezone.now():%H:%M:%S})")


# Timing -------------------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    url: str
    required: bool = True
    cold: bool = False  # empty Django's cache before each request


def pages(rows: int) -> list[Page]:
    from django.utils import timezone

    from receivers.models import Event, Source
    from subscriptions.models import Delivery, Subscription

    ids = dict(Source.objects.values_list("slug", "pk"))
    busy, small, idle = ids["gridx-prod"], ids["ideavate-switch"], ids["idle"]
    middle = f"evt-{rows // 2:09d}"  # the seed numbers its events
    event_pk = Event.objects.filter(external_id=middle).values_list("pk", flat=True)[0]
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    sub = Subscription.objects.order_by("pk").values_list("pk", flat=True)[0]
    delivery = Delivery.objects.filter(status="failed").values_list("pk", flat=True)[0]

    def dates(start) -> str:
        return urlencode({"received_at__gte": str(start), "received_at__lt": str(tomorrow)})

    events = "/admin/receivers/event/"
    deliveries = "/admin/subscriptions/delivery/"
    busy_device = device(rows // 2)

    def payload(*terms: str) -> str:
        return f"{events}?{urlencode({'q': ' '.join(terms)})}"

    def api(*terms: str) -> str:
        return f"/api/v1/events/?{urlencode([('payload', t) for t in terms])}"

    return [
        Page("event list", events),
        Page("event list, page 50", f"{events}?p=50"),
        Page("filter: busy source", f"{events}?source__id__exact={busy}"),
        Page("filter: small source", f"{events}?source__id__exact={small}"),
        Page("filter: idle source (no rows)", f"{events}?source__id__exact={idle}"),
        Page("filter: common type", f"{events}?{urlencode({'type': TYPES[3]})}"),
        Page("filter: rare type", f"{events}?{urlencode({'type': RARE_TYPE})}"),
        Page("filter: status pending", f"{events}?status__exact=pending"),
        Page("filter: status ignored", f"{events}?status__exact=ignored"),
        Page("filter: status dispatched", f"{events}?status__exact=dispatched"),
        Page("filter: test events", f"{events}?is_test__exact=1"),
        Page("filter: not test events", f"{events}?is_test__exact=0"),
        Page("filter: received today", f"{events}?{dates(today)}"),
        Page("filter: past 7 days", f"{events}?{dates(today - timedelta(days=7))}"),
        Page(
            "filter: small source + rare type",
            f"{events}?source__id__exact={small}&{urlencode({'type': RARE_TYPE})}",
        ),
        Page("search: event id", f"{events}?q={middle}"),
        Page("search: unknown event id", f"{events}?q=evt-does-not-exist"),
        Page(
            f"payload: a device (~{rows // DEVICES:,} events)",
            payload(f"data.applianceID={busy_device}"),
        ),
        Page("payload: a device with 1 event", payload(f"data.applianceID={RARE_DEVICE}")),
        Page("payload: an unknown device", payload("data.applianceID=fc0a-not-there")),
        Page("payload: a number (n=g)", payload(f"data.n={rows // 2}")),
        Page(
            "payload: device + number",
            payload(f"data.applianceID={busy_device}", f"data.n={rows // 2}"),
        ),
        Page(
            "payload: device + busy source",
            payload(f"data.applianceID={busy_device}") + f"&source__id__exact={busy}",
        ),
        Page("API payload: a device", api(f"data.applianceID:{busy_device}")),
        Page("API payload: a device with 1 event", api(f"data.applianceID:{RARE_DEVICE}")),
        Page("API payload: an unknown device", api("data.applianceID:fc0a-not-there")),
        Page(
            "API payload: device + number",
            api(f"data.applianceID:{busy_device}", f"data.n:{rows // 2}"),
        ),
        Page("event detail", f"{events}{event_pk}/change/", required=False),
        Page("delivery list", deliveries, required=False),
        Page("deliveries: failed", f"{deliveries}?status__exact=failed", required=False),
        Page("deliveries: subscription", f"{deliveries}?subscription__id__exact={sub}", False),
        Page("delivery detail", f"{deliveries}{delivery}/change/", required=False),
        Page("dashboard", "/admin/dashboard/", required=False),
        Page("dashboard, cold cache", "/admin/dashboard/", required=False, cold=True),
    ]


def login():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def time_page(client, page: Page, repeat: int, explain: bool) -> tuple[float, float]:
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(page.url)  # warm: templates, connection, caches
    if response.status_code != 200:
        raise SystemExit(f"{page.url} answered {response.status_code}")
    samples = []
    for _ in range(repeat):
        if page.cold:
            cache.clear()
        started = time.perf_counter()
        response = client.get(page.url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    if explain:
        with CaptureQueriesContext(connection) as queries:
            client.get(page.url)
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        print(f"    slowest query ({float(slowest['time']) * 1000:.0f} ms): {slowest['sql'][:300]}")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
            for (line,) in cursor.fetchall():
                print(f"      {line}")
    return statistics.median(samples), max(samples)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure(args.database_url)
    ensure_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    say(f"migrating {urlsplit(args.database_url).path.lstrip('/')}")
    call_command("migrate", verbosity=0, interactive=False)
    have = seeded_rows()
    if args.reseed or have != args.rows:
        seed(args.rows)
    else:
        say(f"reusing the {have:,} seeded events (--reseed to seed again)")
    client = login()
    say(f"timing {args.repeat} requests per page, median and worst, budget {args.budget_ms} ms")
    failures = 0
    for page in pages(args.rows):
        median, worst = time_page(client, page, args.repeat, args.explain)
        ok = median < args.budget_ms
        verdict = ("PASS" if ok else "FAIL") if page.required else ("ok" if ok else "slow")
        failures += page.required and not ok
        print(f"  {page.name:<36} {median:6.0f} ms  (worst {worst:4.0f})  {verdict}", flush=True)
    say(
        f"{args.rows:,} events: "
        + ("every required page within budget" if not failures else f"{failures} page(s) FAIL")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
