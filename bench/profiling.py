"""Where the time goes (`make bench BENCH_ARGS=--profile`): evidence for the report.

- py-spy (installed into bench/.venv-profile, never into the project's venv) samples the
  hub's gunicorn workers under wrk load and the Celery worker while it drains a backlog, with
  --gil so that only on-CPU Python time is counted; the raw samples are kept under results/;
- a census of SQL statements per received event and per delivery, taken in this process
  with the hub's own services and Django's CaptureQueriesContext.

Profiling slows what it watches, so it runs after the measurements, never during them.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

from bench import hubdb, procs
from bench.common import (
    HUB_DB,
    HUB_REDIS_DB,
    PROFILE_VENV,
    SECRET,
    SOURCE_SLUG,
    Config,
    ensure_venv,
    flush_redis,
    say,
)
from bench.pool import read_pool, write_pool

PY_SPY = "py-spy==0.4.3"
PROJECT_ROOTS = ("receivers/", "subscriptions/", "hub/", "bench/baselines/")
# Frames that only say "a thread/worker is running", not what it spends time on.
PLUMBING = (
    "gunicorn/",
    "threading.py",
    "celery/concurrency/",
    "celery/worker/",
    "celery/bootsteps.py",
    "celery/app/trace.py",
    "kombu/asynchronous/",
    "concurrent/futures/",
    "click/",
    "celery/bin/",
    "<module>",
)


def py_spy() -> str:
    python = ensure_venv(PROFILE_VENV, [PY_SPY], PY_SPY)
    return str(python.parent / "py-spy")


def record(pids: list[int], seconds: int, out_dir: Path, label: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tool = py_spy()
    jobs = []
    for pid in pids:
        path = out_dir / f"{label}-{pid}.raw"
        cmd = [tool, "record", "-p", str(pid), "-d", str(seconds), "-r", "200"]
        cmd += ["--gil", "--nonblocking", "-f", "raw", "-o", str(path)]
        jobs.append(
            (path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        )
    paths = []
    for path, job in jobs:
        _, err = job.communicate(timeout=seconds + 60)
        if job.returncode != 0 or not path.exists():
            raise RuntimeError(f"py-spy failed (ptrace allowed?): {err.decode()[-500:]}")
        paths.append(path)
    return paths


def frame_key(frame: str) -> str:
    name, _, where = frame.partition(" (")
    file = where.split(":")[0]
    for root in ("site-packages/", "/work/main/", "python3.12/"):
        if root in file:
            file = file.split(root, 1)[1]
    return f"{name} ({file})"


def summarize(paths: list[Path], top: int = 30) -> dict:
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    by_task: Counter = Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            frames = [frame_key(f) for f in stack.split(";") if f]
            task = next((f for f in frames if "/tasks.py)" in f), None)
            by_task[task.split(" (")[0] if task else "(no task: Celery, kombu, beat)"] += n
            for key in set(frames):
                if not any(p in key for p in PLUMBING):
                    inclusive[key] += n
            if frames:
                leaf[frames[-1]] += n
    pct = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    project = [
        [pct(n), key]
        for key, n in inclusive.most_common()
        if any(f"({root}" in key for root in PROJECT_ROOTS)
    ]
    return {
        "samples": total,
        "by_task": [[pct(n), key] for key, n in by_task.most_common()],
        "project": project[:top],
        "inclusive": [[pct(n), key] for key, n in inclusive.most_common(top)],
        "self": [[pct(n), key] for key, n in leaf.most_common(15)],
    }


def print_profile(title: str, summary: dict) -> None:
    print(f"\n{title} ({summary['samples']} on-CPU samples)")
    if len(summary.get("by_task", [])) > 1:
        print("  %            Celery task")
        for pct, key in summary["by_task"]:
            print(f"  {pct:10.1f}  {key}")
    print("  inclusive %  project function")
    for pct, key in summary["project"][:20]:
        print(f"  {pct:10.1f}  {key}")
    print("  inclusive %  any function (top 15)")
    for pct, key in summary["inclusive"][:15]:
        print(f"  {pct:10.1f}  {key}")
    print("  self %       function")
    for pct, key in summary["self"][:8]:
        print(f"  {pct:10.1f}  {key}")


# In-process census ------------------------------------------------------------------------

RECEIVE_KEYS = [
    ("handle (whole endpoint)", "receivers/views.py", "handle"),
    ("cached_source", "receivers/lookup.py", "cached_source"),
    ("provider.verify", "receivers/providers/", "verify"),
    ("JSON parse + checks", "receivers/services.py", "load_json"),
    ("provider.parse", "receivers/providers/", "parse"),
    ("masked_headers", "receivers/masking.py", "masked_headers"),
    ("INSERT (insert_rows)", "receivers/storage.py", "insert_rows"),
    ("announce_stored", "subscriptions/dispatch.py", "announce_stored"),
    ("all SQL execution (cursor)", "psycopg/cursor.py", "execute"),
]
DRAIN_KEYS = [
    ("claim_subscription", "subscriptions/services/drain.py", "claim_subscription"),
    ("claim_due", "subscriptions/services/drain.py", "claim_due"),
    ("build_request (render + sign)", "subscriptions/payloads.py", "build_request"),
    ("post (the HTTP request)", "subscriptions/sender.py", "post"),
    ("apply_result", "subscriptions/services/outcomes.py", "apply_result"),
    ("record (save the batch)", "subscriptions/services/outcomes.py", "record"),
    ("  of which save_outcomes", "subscriptions/services/outcomes.py", "save_outcomes"),
    ("  of which QuerySet.bulk_create", "django/db/models/query.py", "bulk_create"),
    ("has_due", "subscriptions/selectors.py", "has_due"),
    ("all SQL execution (cursor)", "django/db/backends/utils.py", "execute"),
]


def breakdown(profiler, keys: list[tuple[str, str, str]], items: int) -> list:
    """[label, ms per item, % of the profiled time] for each key found in the profile."""
    import pstats

    stats = pstats.Stats(profiler).stats
    total = max(ct for (_, _, _), (_, _, _, ct, _) in stats.items())
    out = []
    for label, file_part, func in keys:
        seconds = 0.0
        for (filename, _, funcname), (_, _, _, ct, callers) in stats.items():
            if funcname != func or file_part not in filename:
                continue
            # Count only the outermost calls: skip entries called by the same function.
            if not any(c[2] == func and file_part in c[0] for c in callers):
                seconds += ct
        if seconds:
            out.append([label, round(1000 * seconds / items, 3), round(100 * seconds / total, 1)])
    return out


def census(target_base: str | None) -> dict:
    """SQL statements per received event and per delivery, and where the time goes (cProfile),
    with the hub's own code in this process against the bench database and target."""
    import cProfile

    hubdb.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from receivers.models import Event
    from subscriptions.models import Subscription
    from subscriptions.services import drain, fanout

    n_receive, n_fan = 200, 300
    pool_path = Path(hubdb.__file__).parent / ".work" / "pools" / "census.txt"
    write_pool(pool_path, SECRET, 2 * n_receive + n_fan + 10, "census")
    pool = read_pool(pool_path)
    client = Client(SERVER_NAME="127.0.0.1")
    out: dict = {}
    hub_path = f"/hooks/{SOURCE_SLUG}/"

    def post(path: str, digest: str, body: bytes) -> None:
        response = client.generic(
            "POST",
            path,
            body,
            content_type="application/json",
            headers={"X-Signature": f"sha512={digest}"},
        )
        assert response.status_code < 300, response.status_code

    def statements(path: str, digest: str, body: bytes) -> list[str]:
        with CaptureQueriesContext(connection) as ctx:
            post(path, digest, body)
        return [q["sql"][:160] for q in ctx.captured_queries]

    hubdb.clear_events()
    post(hub_path, *pool[0])
    post("/bench/textbook/", *pool[0])
    out["hub_receive"] = statements(hub_path, *pool[1])
    out["textbook_receive"] = statements("/bench/textbook/", *pool[1])

    started = time.perf_counter()
    for digest, body in pool[10 : 10 + n_receive]:
        post(hub_path, digest, body)
    plain_ms = (time.perf_counter() - started) * 1000 / n_receive
    profiler = cProfile.Profile()
    profiler.enable()
    for digest, body in pool[10 + n_receive : 10 + 2 * n_receive]:
        post(hub_path, digest, body)
    profiler.disable()
    out["receive_profile"] = {
        "ms_per_event_unprofiled": round(plain_ms, 3),
        "breakdown": breakdown(profiler, RECEIVE_KEYS, n_receive),
    }

    if target_base:
        urls = {name: f"{target_base}/ok/{name}" for name in ("a", "b", "c")}
        hubdb.set_subscriptions(urls, 15)
        hubdb.clear_events()
        for digest, body in pool[10 + 2 * n_receive : 10 + 2 * n_receive + n_fan]:
            post(hub_path, digest, body)
        ids = list(Event.objects.values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            made = fanout.fan_out(ids)
            fan_out_ms = (time.perf_counter() - started) * 1000
        out["fan_out"] = {
            "events": len(ids),
            "deliveries": made,
            "statements": len(ctx.captured_queries),
            "ms": round(fan_out_ms, 1),
        }
        subs = list(Subscription.objects.order_by("name"))
        drains = []
        with CaptureQueriesContext(connection) as ctx:
            started = time.perf_counter()
            sent = drain.drain_subscription(subs[0].pk)
            ms = (time.perf_counter() - started) * 1000
        kinds = Counter(q["sql"].split()[0] for q in ctx.captured_queries)
        drains.append(
            {
                "sent": sent,
                "statements": len(ctx.captured_queries),
                "ms": round(ms, 1),
                "ms_per_delivery": round(ms / max(sent, 1), 3),
                "by_kind": dict(kinds),
            }
        )
        out["drains"] = drains
        profiler = cProfile.Profile()
        profiler.enable()
        sent = drain.drain_subscription(subs[1].pk)
        profiler.disable()
        out["drain_profile"] = {"sent": sent, "breakdown": breakdown(profiler, DRAIN_KEYS, sent)}
        hubdb.clear_events()
    hubdb.close()
    flush_redis(HUB_REDIS_DB)
    return out


def run(cfg: Config, wrk: str) -> dict:
    from bench import fanout_bench, receive_bench

    out: dict = {}
    prof_dir = cfg.run_dir / "profile"
    seconds = max(6, cfg.receive_seconds)
    py_spy()
    say("profile: hub receive endpoint under wrk, py-spy --gil on every server worker")
    hubdb.clear_events()
    pools = {}
    for name, count in (("warm", 2), ("wrk0", seconds + 2)):
        pools[name] = cfg.run_dir / "pools" / f"prof-{name}.txt"
        write_pool(pools[name].with_name(pools[name].name + ".1"), SECRET, 6000 * count, name)
    server = receive_bench.start_hub_server(cfg, cfg.server, "bench.settings", "granian-prof")
    try:
        base = f"http://127.0.0.1:{server.port}"
        receive_bench.run_wrk(
            wrk, base + f"/hooks/{SOURCE_SLUG}/", pools["warm"], 2, cfg.connections
        )
        for name, path in (("hub", f"/hooks/{SOURCE_SLUG}/"), ("textbook", "/bench/textbook/")):
            workers = procs.children_pids(server.pid)
            job = subprocess.Popen(
                [
                    wrk,
                    "-t1",
                    f"-c{cfg.connections}",
                    f"-d{seconds + 2}s",
                    "-s",
                    str(Path(receive_bench.__file__).parent / "wrk" / "signed_pool.lua"),
                    base + path,
                ],
                env={"BENCH_POOL": str(pools["wrk0"]), "PATH": "/usr/bin:/bin"},
                stdout=subprocess.DEVNULL,
            )
            time.sleep(1)
            paths = record(workers, seconds, prof_dir, f"receive-{name}")
            job.wait(timeout=60)
            out[f"receive_{name}"] = summarize(paths)
    finally:
        server.stop()
        flush_redis(HUB_REDIS_DB)

    say("profile: hub Celery worker draining a backlog, py-spy --gil")
    target = fanout_bench.Target(cfg)
    try:
        hub = fanout_bench.Hub(cfg, target)
        hub.set_targets(target.urls(), 15)
        n = cfg.events
        pool_path = cfg.run_dir / "pools" / "prof-fanout.txt"
        write_pool(pool_path, SECRET, n + 10, "proff")
        hub.clear()
        target.reset()
        hub.start_web()
        receive_bench.run_loadgen(hub.web.port, hub.receive_path, pool_path, n, 0, concurrency=16)
        hub.start_worker()
        time.sleep(1.5)
        # About as long as the backlog takes to drain at ~250 deliveries/s.
        paths = record([hub.worker.pid], max(8, min(40, n * 3 // 250)), prof_dir, "worker")
        hub.stop()
        out["worker"] = summarize(paths)
        say("profile: SQL statements and cProfile breakdown, receive and drain, in-process")
        out["census"] = census(target.base)
    finally:
        target.proc.stop()
    return out


def print_report(data: dict) -> None:
    for key, title in (
        ("receive_hub", "py-spy: hub receive (Granian workers)"),
        ("receive_textbook", "py-spy: textbook receive (the same Granian workers, Django ASGI)"),
        ("worker", "py-spy: hub Celery worker (fan-out + drains)"),
    ):
        if key in data:
            print_profile(title, data[key])
    data_census = data.get("census")
    if not data_census:
        return
    print("\nSQL statements per received event (Django's CaptureQueriesContext; BEGIN/COMMIT")
    print("and the connection health check are not captured)")
    for key in ("hub_receive", "textbook_receive"):
        print(f"  {key}: {len(data_census[key])}")
        for statement in data_census[key]:
            print(f"    {statement}")
    rp = data_census["receive_profile"]
    print(
        f"\nhub receive in-process (Django test client, no HTTP): "
        f"{rp['ms_per_event_unprofiled']:.2f} ms per event; under cProfile:"
    )
    for label, ms, pct in rp["breakdown"]:
        print(f"  {pct:5.1f}%  {ms:7.3f} ms/event  {label}")
    if "fan_out" in data_census:
        f = data_census["fan_out"]
        print(
            f"\nfan_out of {f['events']} events -> {f['deliveries']} deliveries: "
            f"{f['statements']} statements, {f['ms']} ms"
        )
        for d in data_census["drains"]:
            print(
                f"drain_subscription sent {d['sent']}: {d['statements']} statements "
                f"{d['by_kind']}, {d['ms']} ms = {d['ms_per_delivery']:.2f} ms per delivery"
            )
        dp = data_census["drain_profile"]
        print(f"drain_subscription of {dp['sent']} deliveries under cProfile:")
        for label, ms, pct in dp["breakdown"]:
            print(f"  {pct:5.1f}%  {ms:7.3f} ms/delivery  {label}")


__all__ = ["run", "print_report", "census", "HUB_DB"]
