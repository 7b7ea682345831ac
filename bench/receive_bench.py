"""Part 1: the hub's receive endpoint against a bare view and a textbook DRF receiver, each
at its best.

Each system runs on its own server, all against the same PostgreSQL database and Redis:

- hub: the hub as docker-compose.yml runs it (Granian, hub.asgi with HUB_FAST_PATH=1);
- bare: the cheapest Django view, 204, with no middleware at all (bench/settings_bare.py),
  on the better of gunicorn `sync -w 2` and `gthread -w 4 --threads 4`;
- textbook: a DRF APIView that checks the same gridX signature, saves through a
  ModelSerializer and calls `.delay()`, on the better of the same two;
- and any other hub servers given with --compare (for example an older design, from another
  checkout: "@PATH gunicorn ...").

Throughput is wrk (one thread, a fixed number of keep-alive connections, a Lua script that
sends a different pre-signed gridX event on every request), `rounds` times per system in a
rotating order, all servers up at once and only the measured one loaded; the best round is
reported (every round is kept in the JSON). Latency at a fixed rate is bench/loadgen.py (open
loop, latency from the scheduled time), for the hub and the best bare and textbook set-ups.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bench import hubdb, procs
from bench.common import (
    BENCH,
    GRANIAN,
    GUNICORN,
    HUB_DB,
    HUB_REDIS_DB,
    PYTHON,
    REPO,
    SECRET,
    SOURCE_SLUG,
    VENV,
    Config,
    CpuMeter,
    flush_redis,
    hub_env,
    post_signed,
    say,
    sql,
    wait_quiet,
)
from bench.pool import read_pool, write_pool

HUB_PATH = f"/hooks/{SOURCE_SLUG}/"
# The plain gunicorn set-ups a competent user would choose on two cores: the best counts.
BASELINE_GUNICORN = {
    "sync -w 2": ["-w", "2", "-k", "sync"],
    "gthread -w 4 --threads 4": ["-w", "4", "-k", "gthread", "--threads", "4"],
}
# Pools hold this many events per second of wrk run: more than any endpoint here can take.
POOL_RATE = 6000
WARM_SECONDS = 2


@dataclass
class System:
    name: str
    kind: str  # hub, bare or textbook
    path: str
    expected: int
    cmd: list[str]
    env: dict
    cwd: Path
    proc: procs.Proc | None = None
    rounds: list[dict] = field(default_factory=list)


def gunicorn_cmd(app: str, port: int, args: list[str], gunicorn: str = str(GUNICORN)) -> list:
    return [
        gunicorn,
        app,
        "--bind",
        f"127.0.0.1:{port}",
        *args,
        "--log-level",
        "warning",
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
    ]


# docker-compose.yml's web command, but the address and the number of workers.
SERVER_OPTIONS = [
    "--interface",
    "asgi",
    "--http",
    "1",
    "--no-ws",
    "--loop",
    "uvloop",
    "--http1-header-read-timeout",
    "10000",
]


def hub_server_cmd(port: int, args: list[str]) -> list[str]:
    """The hub's server, as docker-compose.yml runs it, with `args` (workers and such)."""
    return [
        str(GRANIAN),
        *SERVER_OPTIONS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
        "hub.asgi:application",
    ]


def hub_server_env(settings: str = "bench.settings", **extra: str) -> dict:
    return hub_env(settings, HUB_FAST_PATH="1", **extra)


def start_hub_server(cfg: Config, args: list[str], settings: str, name: str) -> procs.Proc:
    port = procs.free_port()
    proc = procs.Proc(
        name,
        hub_server_cmd(port, args),
        env=hub_server_env(settings),
        cwd=REPO,
        log_dir=cfg.run_dir / "logs",
    )
    proc.port = port
    procs.wait_http(f"http://127.0.0.1:{port}/api/v1/", proc)
    return proc


def systems(cfg: Config) -> list[System]:
    found = [
        System(
            f"hub (granian {' '.join(cfg.server)})",
            "hub",
            HUB_PATH,
            200,
            ["HUB", *cfg.server],
            hub_server_env(),
            REPO,
        )
    ]
    for label, args in BASELINE_GUNICORN.items():
        found.append(
            System(
                f"bare, {label}",
                "bare",
                "/bench/bare/",
                204,
                args,
                hub_env("bench.settings_bare"),
                REPO,
            )
        )
    for label, args in BASELINE_GUNICORN.items():
        found.append(
            System(
                f"textbook, {label}",
                "textbook",
                "/bench/textbook/",
                201,
                args,
                hub_env("bench.settings"),
                REPO,
            )
        )
    for n, command in enumerate(cfg.compare):
        repo = REPO
        if command[0].startswith("@"):
            repo, command = Path(command[0][1:]), command[1:]
        env = hub_server_env(PYTHONPATH=str(repo))
        found.append(
            System(f"hub-alt{n} ({' '.join(command)})", "hub", HUB_PATH, 200, command, env, repo)
        )
    return found


def start(cfg: Config, system: System) -> None:
    port = procs.free_port()
    if system.cmd[0] == "HUB":
        cmd = hub_server_cmd(port, system.cmd[1:])
    elif system.cmd[0] in ("uvicorn", "gunicorn", "granian"):
        # A full command line (--compare): the app and options as given, bound to our port.
        bind = ["--host", "127.0.0.1", "--port", str(port)]
        if system.cmd[0] == "gunicorn":
            bind = ["--bind", f"127.0.0.1:{port}"]
        cmd = [str(VENV / "bin" / system.cmd[0]), *bind, *system.cmd[1:]]
    else:
        cmd = gunicorn_cmd("hub.wsgi:application", port, system.cmd)
    tag = system.name.split(" (")[0].replace(", ", "-").replace(" ", "_")
    proc = procs.Proc(
        f"receive-{tag}", cmd, env=system.env, cwd=system.cwd, log_dir=cfg.run_dir / "logs"
    )
    proc.port = port
    procs.wait_http(f"http://127.0.0.1:{port}/api/v1/", proc)
    system.proc = proc


def run_wrk(wrk: str, url: str, pool: Path, seconds: int, connections: int) -> dict:
    """wrk with the signed-pool script; pool is "<prefix>" and wrk reads "<prefix>.1"."""
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk" / "signed_pool.lua"),
        url,
    ]
    env = {"BENCH_POOL": str(pool), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
            data["ok"] = data["requests"] - data["non2xx"]
            return data
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


def run_loadgen(port: int, path: str, pool: Path, count: int, rate: float, **kw) -> dict:
    out = pool.parent / f"loadgen-{port}-{path.strip('/').replace('/', '_')}-{rate:g}.json"
    cmd = [
        str(PYTHON),
        str(BENCH / "loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--pool",
        str(pool),
        "--count",
        str(count),
        "--rate",
        str(rate),
        "--concurrency",
        str(kw.get("concurrency", 64)),
        "--start",
        str(kw.get("start", 0)),
        "--out",
        str(out),
    ]
    if kw.get("record"):
        cmd.append("--record")
    timeout = (count / rate if rate else count / 50) + 120
    subprocess.run(cmd, check=True, timeout=timeout)
    return json.loads(out.read_text())


def check_endpoint(system: System, pool: Path, line: int) -> None:
    """The endpoint accepts a fresh signed event with the status it should, and (but the bare
    view) refuses a bad signature."""
    digest, body = read_pool(pool)[-1 - line]
    url = f"http://127.0.0.1:{system.proc.port}{system.path}"
    got = post_signed(url, digest, body)
    if got != system.expected:
        raise RuntimeError(f"{system.name} answered {got} to a valid event, not {system.expected}")
    bad = post_signed(url, "00" * 64, body)
    if system.kind != "bare" and bad != 401:
        raise RuntimeError(f"{system.name} answered {bad} to a bad signature, expected 401")


def make_pools(cfg: Config, found: list[System]) -> dict[str, Path]:
    """A pool of distinct events per system and round (a hub given another's events would
    answer duplicates, a cheaper path), and one for the fixed-rate runs."""
    pools_dir = cfg.run_dir / "pools"
    pools = {}
    for n, _ in enumerate(found):
        for r in ("warm", *range(cfg.rounds)):
            path = pools_dir / f"s{n}-{r}.txt"
            seconds = WARM_SECONDS if r == "warm" else cfg.receive_seconds
            write_pool(path.with_name(path.name + ".1"), SECRET, POOL_RATE * seconds, f"s{n}r{r}")
            pools[f"{n}-{r}"] = path
    paced = pools_dir / "paced.txt"
    write_pool(paced, SECRET, 3 * (cfg.paced_rate * cfg.paced_seconds + 10) + 20, "paced")
    pools["paced"] = paced
    return pools


def run(cfg: Config, wrk: str) -> dict:
    hubdb.migrate_now()
    hubdb.clear_events()
    sql(HUB_DB, "TRUNCATE baselines_textbookevent RESTART IDENTITY")
    flush_redis(HUB_REDIS_DB)
    found = systems(cfg)
    pools = make_pools(cfg, found)
    quiet = wait_quiet(cfg.quiet_wait)
    try:
        for system in found:
            say(f"receive: starting {system.name}")
            start(cfg, system)
        procs.wait_settled(*(s.proc for s in found))
        for n, system in enumerate(found):
            check_endpoint(system, pools["paced"], n)
            run_wrk(wrk, url_of(system), pools[f"{n}-warm"], WARM_SECONDS, cfg.connections)
        meter = CpuMeter({s.name: s.proc for s in found}, HUB_DB)
        for r in range(cfg.rounds):
            # A rotating order: no system always runs first or right after another.
            order = found[r % len(found) :] + found[: r % len(found)]
            for system in order:
                pool = pools[f"{found.index(system)}-{r}"]
                meter.start()
                result = run_wrk(wrk, url_of(system), pool, cfg.receive_seconds, cfg.connections)
                cpu = meter.stop()
                result["cpu"] = {**cpu, "server": cpu.get(system.name, 0.0)}
                system.rounds.append(result)
                say(
                    f"  {system.name:44s} round {r + 1}: {result['rps']:.0f} req/s, "
                    f"p99 {result['p99_us'] / 1000:.1f} ms, non-2xx {result['non2xx']}, "
                    f"other load {cpu['other_cpu_pct']:.0f}% of a core"
                )
        out: dict = {"quiet_wait_load_pct": quiet, "systems": {}}
        for system in found:
            # The best round: on a shared 2-core machine a round only ever loses to noise.
            best = max(system.rounds, key=lambda r: r["rps"])
            out["systems"][system.name] = {
                "kind": system.kind,
                "wrk": best,
                "wrk_rounds": system.rounds,
            }
        paced_for = [found[0], best_of(found, out, "bare"), best_of(found, out, "textbook")]
        count = cfg.paced_rate * cfg.paced_seconds
        for n, system in enumerate(paced_for):
            # An endpoint that could not keep up (the textbook receiver) leaves a backlog of
            # queued requests and database work: the next one must not inherit it.
            procs.wait_settled(*(s.proc for s in found))
            wait_quiet(min(cfg.quiet_wait, 15))
            meter.start()
            result = run_loadgen(
                system.proc.port,
                system.path,
                pools["paced"],
                count,
                cfg.paced_rate,
                start=n * (count + 10),
            )
            result["cpu"] = meter.stop()
            out["systems"][system.name]["paced"] = result
            say(
                f"  {system.name:44s} at {cfg.paced_rate}/s: p50 {result['p50_ms']:.1f} ms, "
                f"p99 {result['p99_ms']:.1f} ms, achieved {result['rate_achieved']:.0f}/s, "
                f"loadgen CPU {result['loadgen_cpu_pct']:.0f}%, p99 second by second "
                f"{' '.join(f'{v:.0f}' for v in result['p99_by_second_ms'])} ms"
            )
        out["stored"] = hubdb.counts()
        return out
    finally:
        for system in found:
            if system.proc is not None:
                system.proc.stop()
        flush_redis(HUB_REDIS_DB)


def url_of(system: System) -> str:
    return f"http://127.0.0.1:{system.proc.port}{system.path}"


def best_of(found: list[System], out: dict, kind: str) -> System:
    candidates = [s for s in found if s.kind == kind]
    return max(candidates, key=lambda s: out["systems"][s.name]["wrk"]["rps"])


def summarize(cfg: Config, data: dict) -> dict:
    eps = data["systems"]
    hub_name = next(iter(eps))
    rps = {name: eps[name]["wrk"]["rps"] for name in eps}
    bare = max((n for n in eps if eps[n]["kind"] == "bare"), key=rps.get)
    textbook = max((n for n in eps if eps[n]["kind"] == "textbook"), key=rps.get)
    paced_p99 = eps[hub_name].get("paced", {}).get("p99_ms")
    return {
        "hub": hub_name,
        "best_bare": bare,
        "best_textbook": textbook,
        "hub_over_bare": rps[hub_name] / rps[bare] if rps[bare] else 0.0,
        "hub_over_textbook": rps[hub_name] / rps[textbook] if rps[textbook] else 0.0,
        "hub_paced_p99_ms": paced_p99,
        "targets": {
            "hub >= 0.5 x the bare view at its best": rps[hub_name] >= 0.5 * rps[bare],
            "hub >= 2.5 x the textbook receiver at its best": rps[hub_name] >= 2.5 * rps[textbook],
            f"hub p99 < 25 ms at {cfg.paced_rate}/s": paced_p99 is not None and paced_p99 < 25,
        },
    }
