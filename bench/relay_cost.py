"""Where a delivery's CPU goes in the relay, stage by stage, measured in this process.

    .venv/bin/python bench/relay_cost.py [--events 2000] [--rounds 3] [--json PATH]

Each round receives `--events` gridX events (Django's test client, not measured), fans them
out to one subscription on bench/target.py and drains it with the hub's own
`drain_subscription`, in this thread. Every stage of the drain (the functions in STAGES,
wherever they are) is timed with this thread's CPU clock (`time.thread_time`: Python, psycopg
and the kernel's socket work), and so is every SQL statement, through Django's
`execute_wrapper`, charged to the innermost stage running it. PostgreSQL's CPU is the
backend's, from /proc. A bare http.client sender then posts the same bodies with the same
headers over one kept-alive connection: the issue's baseline, a delivery without any
bookkeeping. What this leaves out, the real worker's Celery task, broker and thread
hand-offs, is the bench's worker CPU per delivery less the drain and fan-out measured here.

Uses the database BENCH_HUB_DB (hub_bench; dropped and created) and Redis db
BENCH_HUB_REDIS_DB (13), like bench/run.py, so never run it beside a run on the same names.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import importlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script, bench/ itself would be first on the path and shadow the standard library.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common, hubdb, procs  # noqa: E402
from bench.common import HUB_DB, HUB_REDIS_DB, SECRET, SOURCE_SLUG  # noqa: E402
from bench.pool import read_pool, write_pool  # noqa: E402

# (label, module, attribute, depth): a stage is timed wherever that attribute is called from;
# missing ones are skipped, so the list can name the stages of the code before and after.
STAGES = [
    ("drain_subscription (whole drain)", "subscriptions.services.drain", "drain_subscription", 0),
    ("claim_subscription", "subscriptions.services.drain", "claim_subscription", 1),
    ("claim_due (claim + fetch)", "subscriptions.services.drain", "claim_due", 1),
    ("send_batch", "subscriptions.services.drain", "send_batch", 1),
    ("build_request (render + sign)", "subscriptions.services.drain", "build_request", 2),
    ("sender.post (HTTP + answer)", "subscriptions.sender", "post", 2),
    ("apply_result", "subscriptions.services.drain", "apply_result", 2),
    ("record (save the batch)", "subscriptions.services.drain", "record", 2),
    ("Attempt INSERT", "django.db.models.query", "QuerySet.bulk_create", 3),
    ("attempts + outcomes, one statement", "subscriptions.services.outcomes", "save_batch", 3),
    ("Delivery UPDATE", "subscriptions.services.outcomes", "save_outcomes", 3),
    ("metrics.report_batch", "subscriptions.metrics", "report_batch", 3),
    ("alerts.after_batch", "subscriptions.services.alerts", "after_batch", 3),
    ("unclaim / end_unsent", "subscriptions.services.drain", "unclaim", 2),
    ("drop_broken_connections", "subscriptions.services.drain", "drop_broken_connections", 2),
    ("still_due", "subscriptions.services.drain", "still_due", 1),
    ("release_subscription", "subscriptions.services.drain", "release_subscription", 1),
]


class Stages:
    """Thread CPU per stage (inclusive), and SQL statements charged to the innermost stage."""

    def __init__(self) -> None:
        self.cpu: Counter = Counter()
        self.sql_cpu: Counter = Counter()
        self.sql_wall: Counter = Counter()
        self.sql_count: Counter = Counter()
        self.stack: list[str] = []
        self.patched: list[tuple[object, str, object]] = []

    def wrap(self, label: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.stack.append(label)
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[label] += time.thread_time() - started
                self.stack.pop()

        return timed

    def __call__(self, execute, sql, params, many, context):
        label = self.stack[-1] if self.stack else "(no stage)"
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.sql_cpu[label] += time.thread_time() - cpu
            self.sql_wall[label] += time.perf_counter() - wall
            self.sql_count[label] += 1

    def install(self) -> None:
        for label, module_name, attr, _ in STAGES:
            owner = importlib.import_module(module_name)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            fn = getattr(owner, name, None)
            if fn is not None and not any(o is owner and a == name for o, a, _ in self.patched):
                self.patched.append((owner, name, fn))
                setattr(owner, name, self.wrap(label, fn))

    def remove(self) -> None:
        for owner, name, fn in reversed(self.patched):
            setattr(owner, name, fn)
        self.patched.clear()


def backend_cpu(connection) -> float:
    """CPU seconds so far of this connection's PostgreSQL backend (from /proc)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return procs.process_cpu_seconds(pid)


def receive(pool: list[tuple[str, bytes]]) -> list[int]:
    from django.test import Client

    from receivers.models import Event

    client = Client(SERVER_NAME="127.0.0.1")
    for digest, body in pool:
        response = client.generic(
            "POST",
            f"/hooks/{SOURCE_SLUG}/",
            body,
            content_type="application/json",
            headers={"X-Signature": f"sha512={digest}"},
        )
        assert response.status_code < 300, response.status_code
    return list(Event.objects.values_list("pk", flat=True))


def one_round(pool: list[tuple[str, bytes]], sub_id: int, target_cpu) -> dict:
    from django.db import connection
    from django.test.utils import override_settings

    from subscriptions.services import drain, fanout

    hubdb.clear_events()
    ids = receive(pool)
    pg, cpu = backend_cpu(connection), time.thread_time()
    made = fanout.fan_out(ids)
    fan_cpu, fan_pg = time.thread_time() - cpu, backend_cpu(connection) - pg
    stages = Stages()
    stages.install()
    try:
        with override_settings(HUB_DRAIN_IDLE_SECONDS=0), connection.execute_wrapper(stages):
            pg, wall, target = backend_cpu(connection), time.perf_counter(), target_cpu()
            sent = drain.drain_subscription(sub_id)
            wall = time.perf_counter() - wall
            pg, target = backend_cpu(connection) - pg, target_cpu() - target
    finally:
        stages.remove()
    assert sent == made, (sent, made)
    per = 1e6 / sent
    rows = {}
    for label, *_ in STAGES:
        if label in stages.cpu and label not in rows:
            rows[label] = {
                "cpu_us": stages.cpu[label] * per,
                "sql_cpu_us": stages.sql_cpu[label] * per,
                "sql_wall_us": stages.sql_wall[label] * per,
                "statements": stages.sql_count[label] / sent,
            }
    return {
        "deliveries": sent,
        "stages": rows,
        "drain_wall_us": wall * per,
        "drain_postgres_us": pg * per,
        "drain_target_us": target * per,
        "fan_out_cpu_us": fan_cpu * 1e6 / made,
        "fan_out_postgres_us": fan_pg * 1e6 / made,
    }


def bare_sender(url: str, count: int, target_cpu) -> dict:
    """The same requests as the hub sends (its body and headers), with nothing else: one
    kept-alive http.client connection, read the answer, next."""
    from django.utils import timezone

    from subscriptions.models import Delivery, Subscription
    from subscriptions.payloads import build_request

    sub = Subscription.objects.get(url=url)
    requests = []
    for delivery in Delivery.objects.select_related("event", "event__source")[:count]:
        requests.append(build_request(delivery, sub, timezone.now()))
    host, _, rest = url.removeprefix("http://").partition("/")
    connection = http.client.HTTPConnection(*host.split(":"))
    cpu, target = time.thread_time(), target_cpu()
    for body, headers in requests:
        connection.request("POST", "/" + rest, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    cpu, target = time.thread_time() - cpu, target_cpu() - target
    connection.close()
    per = 1e6 / len(requests)
    return {"requests": len(requests), "cpu_us": cpu * per, "target_us": target * per}


def summarize(rounds: list[dict]) -> dict:
    """Per stage, the median over rounds of its µs per delivery."""

    def median(values: list[float]) -> float:
        values = sorted(values)
        return values[len(values) // 2]

    labels = [label for label in rounds[0]["stages"]]
    out = {
        label: {
            key: median([r["stages"][label][key] for r in rounds if label in r["stages"]])
            for key in ("cpu_us", "sql_cpu_us", "sql_wall_us", "statements")
        }
        for label in labels
    }
    extra = ("drain_wall_us", "drain_postgres_us", "drain_target_us")
    extra += ("fan_out_cpu_us", "fan_out_postgres_us")
    return {"stages": out, **{key: median([r[key] for r in rounds]) for key in extra}}


def print_report(summary: dict, rounds: list[dict], bare: dict) -> None:
    depth = {label: d for label, _, _, d in STAGES}
    print("\nµs per delivery (median of rounds); SQL = inside Django's cursor.execute")
    print(f"{'stage':44} {'CPU':>7} {'of it SQL':>9} {'SQL wall':>9} {'statements':>10}")
    for label, row in summary["stages"].items():
        name = "  " * depth[label] + label
        print(
            f"{name:44} {row['cpu_us']:7.0f} {row['sql_cpu_us']:9.0f} "
            f"{row['sql_wall_us']:9.0f} {row['statements']:10.2f}"
        )
    print(f"{'drain wall time':44} {summary['drain_wall_us']:7.0f}")
    print(f"{'PostgreSQL backend CPU during the drain':44} {summary['drain_postgres_us']:7.0f}")
    print(f"{'the target (bench/target.py) during the drain':44} {summary['drain_target_us']:7.0f}")
    print(f"{'fan_out (this process)':44} {summary['fan_out_cpu_us']:7.0f}")
    print(f"{'fan_out (PostgreSQL backend)':44} {summary['fan_out_postgres_us']:7.0f}")
    print(f"{'bare http.client sender, same requests':44} {bare['cpu_us']:7.0f}")
    print(f"{'  the target during the bare sender':44} {bare['target_us']:7.0f}")
    whole = "drain_subscription (whole drain)"
    print("drain CPU per round:", ", ".join(f"{r['stages'][whole]['cpu_us']:.0f}" for r in rounds))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    procs.install_cleanup()
    common.check_services()
    common.recreate_database(HUB_DB)
    hubdb.migrate_now()
    common.flush_redis(HUB_REDIS_DB)
    run_dir = common.WORK / "relay-cost"
    port = procs.free_port()
    target = procs.Proc(
        "target",
        [str(common.PYTHON), str(common.BENCH / "target.py"), "--port", str(port)],
        env={"PATH": "/usr/bin:/bin"},
        cwd=common.REPO,
        log_dir=run_dir / "logs",
    )
    try:
        procs.wait_http(f"http://127.0.0.1:{port}/_stats", target)
        url = f"http://127.0.0.1:{port}/ok/a"
        stats = f"http://127.0.0.1:{port}/_stats"

        def target_cpu() -> float:
            return common.get_json(stats)["cpu_seconds"]

        hubdb.create_source()
        hubdb.set_subscriptions({"a": url}, 15)
        hubdb.setup()
        from subscriptions.models import Subscription

        sub_id = Subscription.objects.get().pk
        rounds = []
        for n in range(args.rounds + 1):
            pool = read_pool(write_pool(run_dir / f"pool-{n}.txt", SECRET, args.events, f"rc{n}"))
            figures = one_round(pool, sub_id, target_cpu)
            if n:  # the first round warms up (imports, caches, prepared connections)
                rounds.append(figures)
        bare = bare_sender(url, args.events, target_cpu)
        summary = summarize(rounds)
        print_report(summary, rounds, bare)
        if args.json:
            args.json.write_text(json.dumps({"summary": summary, "rounds": rounds, "bare": bare}))
    finally:
        hubdb.close()
        target.stop()
        common.flush_redis(HUB_REDIS_DB)
        common.drop_database(HUB_DB)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
