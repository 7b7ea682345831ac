"""The relay's baselines in part 2 (issue 15): django-webhook at its best, and a bare sender.

django-webhook runs as a competent user would run it: with CELERY_DB_REUSE_MAX=1000 (the
hub's own value in hub/settings.py; without it Celery's Django fixup closes the database
connection after every task) and CONN_MAX_AGE=60 (the hub's), its worker tried as
`--pool threads` (the hub's own command line: two processes of 16 threads by default) and
as `--pool prefork` (one worker of four processes per core, 8 on two cores). The better
burst is kept as
"django-webhook at its best"; its paced and hang phases run with that set-up only. One burst
of the default configuration (no CELERY_DB_REUSE_MAX, threads) is kept for reference, unless
--quick.

The bare sender (bench/bare_sender.py) is the physical anchor: the hub burst's own signed
bodies POSTed to the same subscribers over kept-alive http.client connections, one process
per core, no database and no broker. Its deliveries/s are measured like a burst's, from the
subscriber's recorded arrivals, first to last; the best of three rounds counts.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BENCH,
    DJW_DB,
    DJW_PROJECT,
    DJW_REDIS_DB,
    DJW_VENV,
    HUB_DB,
    PYTHON,
    REPO,
    SECRET,
    Config,
    CpuMeter,
    djw_env,
    ensure_venv,
    flush_redis,
    recreate_database,
    say,
    sql,
    wait_quiet,
)
from bench.fanout_bench import DEVICES, WARM_EVENTS, System, analyse, burst, paced
from bench.pool import read_pool, write_pool
from bench.receive_bench import BASELINE_GUNICORN, gunicorn_cmd
from bench.subscribers import NAMES, Target

# django-webhook's web server: the better gunicorn set-up for a WSGI app with a pool to wait on.
DJW_GUNICORN = BASELINE_GUNICORN["gthread -w 4 --threads 4"]
# The hub's CELERY_DB_REUSE_MAX and CONN_MAX_AGE (hub/settings.py).
DB_REUSE_MAX = 1000
CONN_MAX_AGE = 60
BARE_ROUNDS = 3


@dataclass(frozen=True)
class WorkerSetup:
    pool: str
    processes: int
    concurrency: int

    @property
    def label(self) -> str:
        if self.pool == "threads":
            return f"--pool threads, {self.processes} x --concurrency {self.concurrency}"
        return f"--pool prefork --concurrency {self.concurrency}"


def worker_setups(cfg: Config) -> tuple[WorkerSetup, WorkerSetup]:
    """The worker set-ups tried, the better burst counts: the hub's own command line (also the
    default configuration's, for reference), and prefork with four processes per core."""
    return (
        WorkerSetup("threads", cfg.worker_processes, cfg.concurrency),
        WorkerSetup("prefork", 1, 4 * (os.cpu_count() or 1)),
    )


def config_label(setup: WorkerSetup, reuse: bool) -> str:
    if reuse:
        return f"{setup.label}, CELERY_DB_REUSE_MAX={DB_REUSE_MAX}, CONN_MAX_AGE={CONN_MAX_AGE}"
    return f"{setup.label}, no CELERY_DB_REUSE_MAX (Celery's default), CONN_MAX_AGE={CONN_MAX_AGE}"


class DjangoWebhook(System):
    database = DJW_DB
    redis_db = DJW_REDIS_DB
    receive_path = "/hooks/gridx/"

    def __init__(self, cfg: Config, target: Target, setup: WorkerSetup, reuse: bool):
        super().__init__(cfg, target)
        self.reuse = reuse
        self.pool = setup.pool
        self.processes = setup.processes
        self.concurrency = setup.concurrency
        self.name = f"django-webhook-{setup.pool}-{setup.processes}x{setup.concurrency}" + (
            "" if reuse else "-default"
        )
        self.label = config_label(setup, reuse)

    def env(self) -> dict:
        extra = {"DJW_CONN_MAX_AGE": str(CONN_MAX_AGE)}
        if self.reuse:
            extra["DJW_CELERY_DB_REUSE_MAX"] = str(DB_REUSE_MAX)
        return djw_env(**extra)

    def web_cmd(self, port):
        gunicorn = str(DJW_VENV / "bin" / "gunicorn")
        cmd = gunicorn_cmd("djw_project.wsgi:application", port, DJW_GUNICORN, gunicorn)
        return cmd, self.env(), DJW_PROJECT

    def worker_cmd(self, beat: bool):
        celery = str(DJW_VENV / "bin" / "celery")
        return [celery, "-A", "djw_project", *self.worker_args()], self.env(), DJW_PROJECT

    def set_targets(self, urls, timeout):
        # django-webhook has no per-webhook timeout (requests waits forever); noted in output.
        manage("bench_setup", *urls.values())

    def clear(self):
        sql(DJW_DB, "TRUNCATE intake_event, django_webhook_webhookevent RESTART IDENTITY")
        flush_redis(self.redis_db)


def manage(*args: str) -> None:
    subprocess.run(
        [str(DJW_VENV / "bin" / "python"), "manage.py", *args],
        cwd=DJW_PROJECT,
        env=djw_env(),
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )


def prepare_django_webhook() -> None:
    """Its virtualenv (created once) and a new, migrated database."""
    requirements = (DJW_PROJECT / "requirements.txt").read_text()
    pins = [
        line.strip()
        for line in requirements.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ensure_venv(DJW_VENV, pins, requirements)
    recreate_database(DJW_DB)
    manage("migrate", "--no-input", "-v0")


def run_django_webhook(cfg: Config, target: Target) -> dict:
    """Every worker set-up's burst with connection reuse; the best one's paced and hang
    phases; the default configuration's burst for reference (not with --quick)."""
    prepare_django_webhook()
    n = cfg.events
    pool_path = cfg.run_dir / "pools" / "fanout-djw.txt"
    # [paced n][burst n][hang n][warm-up events]; every burst takes the same n (the events
    # table is emptied before each).
    write_pool(pool_path, SECRET, 3 * n + WARM_EVENTS, "fdjw", devices=DEVICES)
    out: dict = {}
    load = wait_quiet(cfg.quiet_wait)
    setups = worker_setups(cfg)
    manage("bench_setup", *target.urls().values())
    tried = {}
    for setup in setups:
        system = DjangoWebhook(cfg, target, setup, reuse=True)
        try:
            tried[setup.label] = burst(system, pool_path, n, n)
        finally:
            system.stop()
    best_setup = max(setups, key=lambda s: tried[s.label].get("deliveries_per_s", 0.0))
    best = DjangoWebhook(cfg, target, best_setup, reuse=True)
    say(f"django-webhook at its best: {best.label}")
    run = {"config": best.label, "worker": best_setup.label, "quiet_wait_load_pct": load}
    run.update({"db_reuse_max": DB_REUSE_MAX, "tried": tried, "burst": tried[best_setup.label]})
    try:
        run["paced"] = paced(best, pool_path, read_pool(pool_path), n, cfg.fanout_rate)
        if cfg.djw_hang:
            best.set_targets(target.urls(hang="c"), cfg.hang_timeout)
            run["hang"] = burst(best, pool_path, 2 * n, n, hang=True)
            run["hang"]["timeout_seconds"] = None  # requests waits for ever
            best.set_targets(target.urls(), cfg.hang_timeout)
    finally:
        best.stop()
    out["django_webhook"] = run
    if not cfg.quick:
        default = DjangoWebhook(cfg, target, setups[0], reuse=False)
        try:
            out["django_webhook_default"] = {
                "config": default.label,
                "burst": burst(default, pool_path, n, n),
            }
        finally:
            default.stop()
    return out


# The bare sender --------------------------------------------------------------------------


def bare_round(cfg: Config, target: Target, pool_path: Path, start: int, count: int) -> dict:
    target.reset()
    meter = CpuMeter({}, HUB_DB)
    meter.start()
    cmd = [str(PYTHON), str(BENCH / "bare_sender.py"), "--pool", str(pool_path)]
    cmd += ["--start", str(start), "--count", str(count)]
    for url in target.urls().values():
        cmd += ["--url", url]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"bench/bare_sender.py failed:\n{done.stderr[-2000:]}")
    sender = json.loads(done.stdout)
    got, complete = target.wait_for(count * len(NAMES), NAMES, stall=10, limit=60)
    cpu = meter.stop()
    result = analyse(target.dump(), None, NAMES)
    result.update({"complete": complete, "expected": count * len(NAMES), "sender": sender})
    result["cpu"] = {**cpu, "sender": sum(p["cpu_seconds"] for p in sender["per_process"])}
    return result


def run_bare_sender(cfg: Config, target: Target, pool_path: Path, start: int, count: int) -> dict:
    """BARE_ROUNDS rounds of the hub burst's events; the best round is the anchor."""
    processes = os.cpu_count()
    say(f"fan-out: bare sender, {count} events x {len(NAMES)}, {processes} processes")
    load = wait_quiet(cfg.quiet_wait)
    rounds = [bare_round(cfg, target, pool_path, start, count) for _ in range(BARE_ROUNDS)]
    best = max(rounds, key=lambda r: r.get("deliveries_per_s", 0.0))
    say(
        "  deliveries/s by round: "
        + " ".join(f"{r.get('deliveries_per_s', 0):.0f}" for r in rounds)
        + f" (best second {best.get('peak_1s', 0)})"
    )
    return {"processes": processes, "quiet_wait_load_pct": load, "burst": best, "rounds": rounds}
