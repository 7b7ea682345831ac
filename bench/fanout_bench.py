"""Part 2: fan-out of received events to three subscribers, the hub and its relay baselines.

Every system runs as it would in production, each against its own PostgreSQL database and
Redis db: the hub receives on Granian as in part 1 and Celery workers send (`--worker-processes`
processes, one per core by default, each `--pool threads --concurrency N`). The subscribers
are one tiny asyncio server (bench/target.py) that answers 200 at once and records when each
webhook arrived. The baselines (django-webhook at its best and in its default configuration,
the bare sender anchor) are bench/relay_baselines.py's, measured by the same code.

- paced: events are POSTed at a fixed rate with the worker running; receive-to-delivered is
  the time from the receive POST's answer to the webhook's arrival at the subscriber;
- burst: the events are received first (worker stopped), then the worker starts and drains
  the backlog: deliveries/s from the first to the last arrival (and the best 1-second window);
- hang: the same burst with the third subscriber accepting connections and never answering:
  the two healthy subscribers' throughput, as a share of the burst run's.

The relay's targets: the hub's burst deliveries/s ≥ 1000, ≥ 10× django-webhook at its best and
≥ 0.5 of the bare sender's.
"""

from __future__ import annotations

import shlex
import time
from collections import Counter
from pathlib import Path

from bench import hubdb, procs
from bench.common import (
    CELERY,
    HUB_DB,
    HUB_REDIS_DB,
    REPO,
    SECRET,
    SOURCE_SLUG,
    Config,
    CpuMeter,
    flush_redis,
    hub_env,
    percentile,
    pg_sessions,
    queue_length,
    say,
    wait_quiet,
)
from bench.pool import read_pool, write_pool
from bench.receive_bench import (
    hub_server_cmd,
    hub_server_env,
    run_loadgen,
)
from bench.subscribers import NAMES, Target

# Events come from this many devices (data.applianceID), for the energy options' bursts.
DEVICES = 500


class System:
    """One webhook sender: its database, its web server, its Celery worker."""

    name = ""
    database = ""
    redis_db = 0
    receive_path = ""

    def __init__(self, cfg: Config, target: Target):
        self.cfg = cfg
        self.target = target
        self.web: procs.Proc | None = None
        self.worker: procs.Proc | None = None
        # The worker: processes, each `--pool <pool> --concurrency <concurrency>`.
        self.pool = "threads"
        self.processes = cfg.worker_processes
        self.concurrency = cfg.concurrency

    def web_cmd(self, port: int) -> tuple[list, dict, Path]:
        raise NotImplementedError

    def worker_cmd(self, beat: bool) -> tuple[list, dict, Path]:
        raise NotImplementedError

    def set_targets(self, urls: dict[str, str], timeout: int) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def start_web(self) -> None:
        port = procs.free_port()
        cmd, env, cwd = self.web_cmd(port)
        self.web = procs.Proc(f"{self.name}-web", cmd, env, cwd, self.cfg.run_dir / "logs")
        self.web.port = port
        procs.wait_http(f"http://127.0.0.1:{port}{self.receive_path}", self.web)

    def start_worker(self) -> None:
        """self.processes Celery workers, one process group (measured and stopped as one); only
        the first runs beat."""
        commands = []
        for index in range(self.processes):
            cmd, env, cwd = self.worker_cmd(beat=index == 0)
            commands.append(shlex.join([*cmd, "-n", f"{self.name.split()[0]}{index}@%h"]))
        shell = ["/bin/sh", "-c", " & ".join(commands) + " & wait"]
        self.worker = procs.Proc(f"{self.name}-worker", shell, env, cwd, self.cfg.run_dir / "logs")

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(grace=5)
            self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        if self.web is not None:
            self.web.stop(grace=5)
            self.web = None

    @property
    def receive_url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}{self.receive_path}"

    def worker_args(self) -> list[str]:
        return [
            "worker",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
        ]


class Hub(System):
    name = "hub"
    database = HUB_DB
    redis_db = HUB_REDIS_DB
    receive_path = f"/hooks/{SOURCE_SLUG}/"

    def __init__(self, cfg, target, settings: str = "hub.settings"):
        super().__init__(cfg, target)
        self.settings = settings
        if settings != "hub.settings":
            self.name = f"hub ({settings})"

    def web_cmd(self, port):
        return hub_server_cmd(port, self.cfg.server), hub_server_env(self.settings), REPO

    def worker_cmd(self, beat: bool):
        schedule = self.cfg.run_dir / "celerybeat-schedule"
        cmd = [str(CELERY), "-A", "hub", *self.worker_args()]
        if beat:
            cmd += ["--beat", "--schedule", str(schedule)]
        return cmd, hub_env(self.settings), REPO

    def set_targets(self, urls, timeout):
        hubdb.set_subscriptions(urls, timeout)

    def clear(self):
        hubdb.clear_events()
        flush_redis(self.redis_db)


# Measurements ----------------------------------------------------------------------------


def analyse(rows: list, answers: dict[str, float] | None, names: tuple[str, ...]) -> dict:
    """Throughput (first to last arrival), best 1 s window, latency and duplicates."""
    rows = [row for row in rows if row[1] in names]
    times = sorted(row[0] for row in rows)
    out: dict = {"delivered": len(rows)}
    if len(times) >= 2 and times[-1] > times[0]:
        out["seconds"] = times[-1] - times[0]
        out["deliveries_per_s"] = (len(times) - 1) / (times[-1] - times[0])
        windows = Counter(int(t - times[0]) for t in times)
        out["peak_1s"] = max(windows.values())
        # Where a burst's time goes: arrivals second by second, and each subscriber's span.
        out["per_second"] = [windows.get(n, 0) for n in range(max(windows) + 1)]
        spans: dict[str, list[float]] = {}
        for at, name, *_ in rows:
            span = spans.setdefault(name, [at, at])
            span[0], span[1] = min(span[0], at), max(span[1], at)
        out["spans_s"] = {
            n: [round(a - times[0], 2), round(b - times[0], 2)] for n, (a, b) in spans.items()
        }
    pairs = Counter((row[1], row[2]) for row in rows)
    out["duplicates"] = sum(n - 1 for n in pairs.values() if n > 1)
    out["per_subscriber"] = dict(Counter(row[1] for row in rows))
    if answers is not None:
        latencies = [(row[0] - answers[row[2]]) * 1000 for row in rows if row[2] in answers]
        out["latency_ms"] = {
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else float("nan"),
            "count": len(latencies),
        }
    return out


def accepted(load: dict) -> int:
    """How many of a loadgen run's requests were answered 2xx."""
    return sum(n for code, n in load["statuses"].items() if 200 <= int(code) < 300)


# Enough warm-up events at the paced rate's concurrency to reach every web process and worker
# thread: their first requests (connections, prepared statements, imports) are not measured.
WARM_EVENTS = 40


def warm_up(system: System, pool_path: Path, start: int) -> None:
    """Events end to end: the worker is consuming and every subscriber is reachable."""
    system.target.reset()
    load = run_loadgen(
        system.web.port,
        system.receive_path,
        pool_path,
        WARM_EVENTS,
        100,
        start=start,
        concurrency=32,
    )
    if accepted(load) < WARM_EVENTS:
        raise RuntimeError(f"{system.name} refused warm-up events: {load['statuses']}")
    got, ok = system.target.wait_for(WARM_EVENTS * len(NAMES), NAMES, stall=30, limit=60)
    if not ok:
        raise RuntimeError(
            f"{system.name}: the warm-up events reached {got} of "
            f"{WARM_EVENTS * len(NAMES)} deliveries\n"
            + (system.worker.tail() if system.worker else "")
        )
    system.target.reset()


def paced(system: System, pool_path: Path, pool: list, count: int, rate: int) -> dict:
    say(f"fan-out: {system.name}, {count} events paced at {rate}/s")
    system.clear()
    system.start_web()
    system.start_worker()
    procs.wait_settled(system.web, system.worker)
    warm_up(system, pool_path, len(pool) - WARM_EVENTS)
    meter = CpuMeter({"gunicorn": system.web, "worker": system.worker}, system.database)
    meter.start()
    load = run_loadgen(
        system.web.port, system.receive_path, pool_path, count, rate, record=True, concurrency=32
    )
    got, complete = system.target.wait_for(count * 3, NAMES, stall=30, limit=120)
    cpu = meter.stop()
    rows = system.target.dump()
    system.stop()
    answers = {a[0]: a[1] for a in load.pop("answers") if 200 <= a[2] < 300}
    result = analyse(rows, answers, NAMES)
    result.update({"complete": complete, "expected": count * 3, "receive": load, "cpu": cpu})
    lat = result.get("latency_ms", {})
    say(
        f"  delivered {got}/{count * 3}, {result.get('deliveries_per_s', 0):.0f}/s, "
        f"receive-to-delivered p50 {lat.get('p50', 0):.0f} ms p99 {lat.get('p99', 0):.0f} ms"
    )
    return result


def receive_backlog(system: System, pool_path: Path, start: int, count: int) -> tuple[dict, int]:
    """A burst's first half: the events received with no worker running (the load generator's
    report, and how many were accepted)."""
    system.clear()
    system.target.reset()
    system.start_web()
    procs.wait_settled(system.web)
    load = run_loadgen(
        system.web.port, system.receive_path, pool_path, count, 0, start=start, concurrency=16
    )
    ok = accepted(load)
    if ok < count:
        say(f"  warning: only {ok} of {count} events were accepted: {load['statuses']}")
    time.sleep(1)  # the hub's announcer threads publish in the background
    return load, ok


def burst(system: System, pool_path: Path, start: int, count: int, hang: bool = False) -> dict:
    label = "with subscriber c hanging" if hang else "backlog"
    say(f"fan-out: {system.name}, {count} events burst ({label})")
    load, ok = receive_backlog(system, pool_path, start, count)
    queued = queue_length(system.redis_db)
    healthy = ("a", "b") if hang else NAMES
    meter = CpuMeter({"gunicorn": system.web}, system.database)
    sessions = pg_sessions(system.database)
    meter.start()
    system.start_worker()
    meter.groups["worker"] = system.worker
    limit = 60 + count * len(healthy) / 100
    got, complete = system.target.wait_for(ok * len(healthy), healthy, stall=30, limit=limit)
    cpu = meter.stop()
    time.sleep(0.6)  # PostgreSQL's statistics are flushed about every half second
    sessions = pg_sessions(system.database) - sessions
    stats = system.target.stats()
    rows = system.target.dump()
    system.stop()
    result = analyse(rows, None, healthy)
    if not complete and rows:
        # Gave up: the rate is what arrived over the whole wait, not first-to-last.
        first = min(row[0] for row in rows if row[1] in healthy)
        result["deliveries_per_s"] = got / max(1e-6, (time.time() - first))
    result["healthy_only"] = analyse(rows, None, ("a", "b"))
    result.update(
        {
            "complete": complete,
            "expected": ok * len(healthy),
            "events_accepted": ok,
            "receive": load,
            "cpu": cpu,
            "messages_queued_by_receive": queued,
            "pg_sessions_opened": sessions,
            "hang_arrivals": stats.get("hang_arrivals", {}),
        }
    )
    say(
        f"  delivered {got}/{ok * len(healthy)} to {','.join(healthy)}: "
        f"{result.get('deliveries_per_s', 0):.0f}/s (best second {result.get('peak_1s', 0)})"
    )
    return result


def run_system(system: System, cfg: Config, tag: str, hang_runs: bool) -> dict:
    pools_dir = cfg.run_dir / "pools"
    n = cfg.events
    pool_path = pools_dir / f"fanout-{tag}.txt"
    # [paced n][burst n][hang n][experiment n][ordering n][coalescing n][warm-up events]
    write_pool(pool_path, SECRET, 6 * n + WARM_EVENTS, f"f{tag}", devices=DEVICES)
    pool = read_pool(pool_path)
    out: dict = {}
    try:
        out["quiet_wait_load_pct"] = wait_quiet(cfg.quiet_wait)
        system.set_targets(system.target.urls(), cfg.hang_timeout)
        out["paced"] = paced(system, pool_path, pool, n, cfg.fanout_rate)
        out["burst"] = burst(system, pool_path, n, n)
        if cfg.experiments and isinstance(system, Hub):
            # The same burst with one suggested setting (bench/settings_reuse.py).
            tuned = Hub(cfg, system.target, "bench.settings_reuse")
            out["experiment_db_reuse"] = burst(tuned, pool_path, 3 * n, n)
        if hang_runs:
            system.set_targets(system.target.urls(hang="c"), cfg.hang_timeout)
            out["hang"] = burst(system, pool_path, 2 * n, n, hang=True)
            out["hang"]["timeout_seconds"] = cfg.hang_timeout
        if isinstance(system, Hub):
            from bench import energy_bench

            out["options"] = energy_bench.option_bursts(cfg, system, pool_path, 4 * n)
    finally:
        system.stop()
    return out


def run(cfg: Config) -> dict:
    hubdb.migrate_now()
    target = Target(cfg)
    result: dict = {"events": cfg.events, "rate": cfg.fanout_rate}
    try:
        result["hub"] = run_system(Hub(cfg, target), cfg, "hub", hang_runs=True)
        from bench import relay_baselines

        n = cfg.events
        hub_pool = cfg.run_dir / "pools" / "fanout-hub.txt"
        result["bare_sender"] = relay_baselines.run_bare_sender(cfg, target, hub_pool, n, n)
        if "djw" in cfg.parts:
            result.update(relay_baselines.run_django_webhook(cfg, target))
    finally:
        target.proc.stop()
    return result


def rate_of(run: dict | None) -> float | None:
    return run["burst"].get("deliveries_per_s") if run else None


def summarize(data: dict) -> dict:
    hub = data["hub"]
    burst_rate = hub["burst"].get("deliveries_per_s", 0.0)
    p99 = hub["paced"].get("latency_ms", {}).get("p99")
    healthy_before = hub["burst"]["healthy_only"].get("deliveries_per_s", 0.0)
    healthy_hang = hub.get("hang", {}).get("deliveries_per_s")
    hang_ratio = healthy_hang / healthy_before if healthy_hang and healthy_before else None
    ratios = {
        key: burst_rate / rate if rate else None
        for key, rate in (
            ("hub_over_django_webhook", rate_of(data.get("django_webhook"))),
            ("hub_over_django_webhook_default", rate_of(data.get("django_webhook_default"))),
            ("hub_over_bare_sender", rate_of(data.get("bare_sender"))),
        )
    }
    djw, bare = ratios["hub_over_django_webhook"], ratios["hub_over_bare_sender"]
    from bench import energy_bench

    options = energy_bench.summarize_options(hub.get("options", {}), hub["burst"])
    return {
        "options": options,
        "hub_burst_deliveries_per_s": burst_rate,
        **ratios,
        "hub_paced_p99_ms": p99,
        "hang_ratio": hang_ratio,
        "targets": {
            ">= 1000 deliveries/s (burst)": burst_rate >= 1000,
            "relay >= 10x django-webhook at its best (burst deliveries/s)": None
            if djw is None
            else djw >= 10,
            "relay >= 0.5 of the bare sender (burst deliveries/s)": None
            if bare is None
            else bare >= 0.5,
            f"p99 receive-to-delivered < 250 ms at {data['rate']} events/s": p99 is not None
            and p99 < 250
            and hub["paced"]["complete"],
            "hanging subscriber costs the others < 10%": None
            if hang_ratio is None
            else hang_ratio >= 0.9,
            **options["targets"],
        },
    }
