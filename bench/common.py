"""Paths, environments, databases, CPU accounting and printing shared by the bench phases."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
VENV = REPO / ".venv"
PYTHON = VENV / "bin" / "python"
GUNICORN = VENV / "bin" / "gunicorn"
GRANIAN = VENV / "bin" / "granian"
CELERY = VENV / "bin" / "celery"
DJW_VENV = BENCH / ".venv-djwebhook"
DJW_PROJECT = BENCH / "djwebhook_project"
PROFILE_VENV = BENCH / ".venv-profile"

PG = "postgres://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379"
# Another database and Redis db let a second run go on beside one already running, e.g.
# BENCH_HUB_DB=hub_bench_2 BENCH_HUB_REDIS_DB=9 (its figures then share the machine too).
HUB_DB = os.environ.get("BENCH_HUB_DB", "hub_bench")
DJW_DB = os.environ.get("BENCH_DJW_DB", "djw_bench")
HUB_REDIS_DB = int(os.environ.get("BENCH_HUB_REDIS_DB", "13"))
DJW_REDIS_DB = int(os.environ.get("BENCH_DJW_REDIS_DB", "14"))
SECRET = "whsec_bench-textbook-secret"
SOURCE_SLUG = "gridx-bench"


@dataclass
class Config:
    quick: bool
    server: list[str]
    compare: list[list[str]]
    events: int
    receive_seconds: int
    paced_seconds: int
    paced_rate: int
    fanout_rate: int
    connections: int
    rounds: int
    hang_timeout: int
    concurrency: int
    parts: set[str]
    profile: bool
    djw_hang: bool
    experiments: bool = False
    worker_processes: int = 2
    quiet_wait: int = 20
    keep_db: bool = False
    skip_admin_scale: bool = False
    run_dir: Path = field(default_factory=lambda: WORK)

    def but(self, **changes) -> Config:
        return Config(**{**self.__dict__, **changes})


# Fernet key for the secrets the bench stores (bench only).
BENCH_SECRET_KEYS = "dH6lXysm866mA5lLsxxRtjSkmQI3vxIEtsNxH_Ryy9Y="


def hub_env(settings: str = "hub.settings", **extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CELERY_", "HUB_", "DATABASE_"))
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DJANGO_SETTINGS_MODULE": settings,
            "SECRET_KEY": "bench-only-secret-key",
            "HUB_SECRET_KEYS": BENCH_SECRET_KEYS,
            "DEBUG": "0",
            "DATABASE_URL": f"{PG}/{HUB_DB}",
            "CELERY_BROKER_URL": f"{REDIS}/{HUB_REDIS_DB}",
            "HUB_ALLOW_PRIVATE_TARGETS": "1",
            "HUB_PUBLIC_URL": "http://127.0.0.1:8000",
            "LOG_LEVEL": "WARNING",
            "BENCH_GRIDX_SECRET": SECRET,
        }
    )
    env.update(extra)
    return env


def djw_env(**extra: str) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "CELERY_", "HUB_", "DATABASE_", "PYTHONPATH"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "djw_project.settings",
            "DATABASE_URL": f"{PG}/{DJW_DB}",
            "CELERY_BROKER_URL": f"{REDIS}/{DJW_REDIS_DB}",
            "BENCH_GRIDX_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
            # django-webhook reads its topics in AppConfig.ready(); Django warns about it.
            "PYTHONWARNINGS": "ignore::RuntimeWarning",
        }
    )
    env.update(extra)
    return env


def say(message: str) -> None:
    print(f"[{time.strftime('%X')}] {message}", flush=True)


# Tools ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(
            "wrk is missing: install it with `sudo apt-get install -y wrk` (Debian's package)"
        )
    say("installing wrk from Debian (apt-get install -y wrk)")
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    subprocess.run([*apt, "update", "-qq"], check=False, timeout=600)
    subprocess.run(
        [*apt, "install", "-y", "-qq", "wrk"],
        check=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


def ensure_venv(path: Path, requirements: list[str], stamp_text: str) -> Path:
    """A bench-only virtualenv, created once and reused while its requirements stay the same."""
    stamp = path / ".bench-installed"
    if stamp.exists() and stamp.read_text() == stamp_text:
        return path / "bin" / "python"
    say(f"creating {path.relative_to(REPO)} ({' '.join(requirements)})")
    subprocess.run([str(PYTHON), "-m", "venv", "--clear", str(path)], check=True, timeout=300)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
    done = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"pip could not install {requirements}:\n{done.stdout}{done.stderr}")
    stamp.write_text(stamp_text)
    return path / "bin" / "python"


# Databases ------------------------------------------------------------------------------------


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sql(database: str, *statements: str) -> list:
    import psycopg

    out = []
    with psycopg.connect(f"{PG}/{database}", autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            out.append(cursor.fetchall() if cursor.description else None)
    return out


def flush_redis(db: int) -> None:
    import redis

    redis.Redis.from_url(f"{REDIS}/{db}", socket_connect_timeout=2).flushdb()


def check_services() -> None:
    import psycopg
    import redis

    try:
        psycopg.connect(f"{PG}/postgres", connect_timeout=3).close()
    except psycopg.Error as exc:
        raise SystemExit(f"PostgreSQL at 127.0.0.1:5432 (user postgres) is needed: {exc}")
    try:
        redis.Redis.from_url(f"{REDIS}/{HUB_REDIS_DB}", socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis at 127.0.0.1:6379 is needed: {exc}")


def queue_length(db: int, queue: str = "celery") -> int:
    import redis

    return int(redis.Redis.from_url(f"{REDIS}/{db}", socket_connect_timeout=2).llen(queue))


def pg_sessions(database: str) -> int:
    """Sessions ever opened to `database` (pg_stat_database, PostgreSQL 14+)."""
    rows = sql("postgres", f"SELECT sessions FROM pg_stat_database WHERE datname = '{database}'")
    return int(rows[0][0][0]) if rows[0] else 0


def wait_quiet(max_wait: float, threshold_pct: float = 30.0) -> float:
    """Wait (up to max_wait s) until other processes use < threshold_pct of a core for 3 s in
    a row; returns their load in the last second. Call it while none of ours is running."""
    deadline = time.monotonic() + max_wait
    quiet = 0
    load = 0.0
    waited = False
    while True:
        busy0, _ = procs.machine_cpu_seconds()
        time.sleep(1)
        busy1, _ = procs.machine_cpu_seconds()
        load = 100.0 * (busy1 - busy0)
        quiet = quiet + 1 if load < threshold_pct else 0
        if quiet >= 3:
            return load
        if time.monotonic() > deadline:
            say(f"  the machine is still busy ({load:.0f}% of a core used by others): going on")
            return load
        if not waited and load >= threshold_pct:
            say(f"  waiting for a quiet machine (others use {load:.0f}% of a core)")
            waited = True


# CPU accounting ----------------------------------------------------------------------------


def pg_backend_cpu(database: str) -> float:
    """CPU seconds of PostgreSQL's backends: the live ones connected to `database`, plus every
    backend that has exited (the postmaster's reaped children, whatever their database)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    marker = f" {database} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            if marker not in title and not title.startswith(b"/usr/lib/postgresql/"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if marker in title:
            total += int(fields[11]) + int(fields[12])
        else:  # the postmaster: CPU of its children that have exited
            total += int(fields[13]) + int(fields[14])
    return total / ticks


def redis_cpu() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "redis-server":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


class CpuMeter:
    """CPU seconds used between start() and stop() by named process groups, PostgreSQL's
    backends of one database, Redis, waited-for children (wrk, loadgen) and the machine."""

    def __init__(self, groups: dict[str, procs.Proc], database: str):
        self.groups = groups
        self.database = database

    def _sample(self) -> dict[str, float]:
        sample = {name: procs.group_cpu_seconds(p.pid) for name, p in self.groups.items()}
        sample["postgres"] = pg_backend_cpu(self.database)
        sample["redis"] = redis_cpu()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        sample["client"] = usage.ru_utime + usage.ru_stime
        busy, total = procs.machine_cpu_seconds()
        sample["machine_busy"], sample["machine_total"] = busy, total
        sample["wall"] = time.monotonic()
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        delta = {key: after[key] - self.before.get(key, 0.0) for key in after}
        wall = delta.pop("wall")
        total = delta.pop("machine_total")
        busy = delta.pop("machine_busy")
        ours = sum(delta.values())
        delta["wall"] = wall
        delta["machine_busy_pct"] = 100.0 * busy / total * os.cpu_count() if total else 0.0
        delta["other_cpu_pct"] = max(0.0, 100.0 * (busy - ours) / wall) if wall else 0.0
        return delta


# HTTP helpers -----------------------------------------------------------------------------


def get_json(url: str, method: str = "GET", timeout: float = 30.0):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def post_signed(url: str, digest: str, body: bytes, timeout: float = 10.0) -> int:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Signature": f"sha512={digest}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# Statistics and printing -------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def whole(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "-"
    return f"{round(value):d}"


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    aligns = aligns or "l" + "r" * (len(headers) - 1)
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.ljust(widths[i]) if aligns[i] == "l" else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def python_of(venv: Path) -> str:
    return str(venv / "bin" / "python")


def this_python() -> str:
    return sys.executable
