"""Part 1: the hub's receive endpoint against a bare view and a textbook DRF receiver.

All three endpoints are served by the same gunicorn processes (bench.settings = the hub's
settings plus bench.baselines), against the same PostgreSQL database and Redis, so the only
difference between them is the code behind the URL.

- throughput: wrk (one thread, a fixed number of keep-alive connections, a Lua script that
  sends a different pre-signed gridX event on every request), `rounds` times per endpoint in a
  rotating order; the best round is reported (every round is kept in the JSON);
- latency at a fixed rate: bench/loadgen.py (open loop, latency from the scheduled time).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench import hubdb, procs
from bench.common import (
    BENCH,
    GUNICORN,
    HUB_DB,
    HUB_REDIS_DB,
    PYTHON,
    REPO,
    SECRET,
    SOURCE_SLUG,
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

ENDPOINTS = {
    "bare": ("/bench/bare/", 204),
    "textbook": ("/bench/textbook/", 201),
    "hub": (f"/hooks/{SOURCE_SLUG}/", 200),
}
# Pools hold this many events per second of wrk run: more than any endpoint here can take.
POOL_RATE = 5000
WARM_SECONDS = 2


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


def start_hub_gunicorn(cfg: Config, args: list[str], settings: str, name: str) -> procs.Proc:
    port = procs.free_port()
    proc = procs.Proc(
        name,
        gunicorn_cmd("hub.wsgi:application", port, args),
        env=hub_env(settings),
        cwd=REPO,
        log_dir=cfg.run_dir / "logs",
    )
    proc.port = port
    procs.wait_http(f"http://127.0.0.1:{port}/api/v1/", proc)
    return proc


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
    out = pool.parent / f"loadgen-{path.strip('/').replace('/', '_')}-{rate:g}.json"
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


def check_endpoints(port: int, pool: Path) -> None:
    """Each endpoint accepts a fresh signed event with the status it should."""
    lines = read_pool(pool)
    for n, (name, (path, expected)) in enumerate(ENDPOINTS.items()):
        digest, body = lines[-1 - n]
        got = post_signed(f"http://127.0.0.1:{port}{path}", digest, body)
        if got != expected:
            raise RuntimeError(f"{name} answered {got} to a valid event, expected {expected}")
        bad = post_signed(f"http://127.0.0.1:{port}{path}", "00" * 64, body)
        if name != "bare" and bad != 401:
            raise RuntimeError(f"{name} answered {bad} to a bad signature, expected 401")


def make_pools(cfg: Config, tag: str) -> dict[str, Path]:
    pools_dir = cfg.run_dir / "pools"
    pools = {"warm": pools_dir / f"{tag}-warm.txt"}
    write_pool(pools["warm"].with_name(pools["warm"].name + ".1"), SECRET, POOL_RATE, f"{tag}w")
    for r in range(cfg.rounds):
        path = pools_dir / f"{tag}-wrk{r}.txt"
        write_pool(path.with_name(path.name + ".1"), SECRET, POOL_RATE * cfg.receive_seconds, tag)
        pools[f"wrk{r}"] = path
    paced = pools_dir / f"{tag}-paced.txt"
    write_pool(paced, SECRET, cfg.paced_rate * cfg.paced_seconds + 10, f"{tag}p")
    pools["paced"] = paced
    return pools


def measure_config(cfg: Config, wrk: str, args: list[str], tag: str, paced: bool) -> dict:
    say(f"receive: gunicorn {' '.join(args)}")
    hubdb.migrate_now()
    hubdb.clear_events()
    sql(HUB_DB, "TRUNCATE baselines_textbookevent RESTART IDENTITY")
    flush_redis(HUB_REDIS_DB)
    pools = make_pools(cfg, tag)
    quiet = wait_quiet(cfg.quiet_wait)
    server = start_hub_gunicorn(cfg, args, "bench.settings", f"gunicorn-receive-{tag}")
    procs.wait_settled(server)
    base = f"http://127.0.0.1:{server.port}"
    try:
        check_endpoints(server.port, pools["paced"])
        warm = {
            name: run_wrk(wrk, base + path, pools["warm"], WARM_SECONDS, cfg.connections)
            for name, (path, _) in ENDPOINTS.items()
        }
        rounds: dict[str, list[dict]] = {name: [] for name in ENDPOINTS}
        meter = CpuMeter({"gunicorn": server}, HUB_DB)
        order = list(ENDPOINTS)
        for r in range(cfg.rounds):
            for name in order[r % 3 :] + order[: r % 3]:
                meter.start()
                result = run_wrk(
                    wrk,
                    base + ENDPOINTS[name][0],
                    pools[f"wrk{r}"],
                    cfg.receive_seconds,
                    cfg.connections,
                )
                result["cpu"] = meter.stop()
                rounds[name].append(result)
                say(
                    f"  {name:8s} round {r + 1}: {result['rps']:.0f} req/s, "
                    f"p99 {result['p99_us'] / 1000:.1f} ms, non-2xx {result['non2xx']}, "
                    f"other load {result['cpu']['other_cpu_pct']:.0f}% of a core"
                )
        out: dict = {"gunicorn": args, "endpoints": {}, "quiet_wait_load_pct": quiet}
        for name, results in rounds.items():
            # The best round: on a shared 2-core machine a round only ever loses to noise
            # (other processes, gthread keep-alive connections piling up on one worker).
            chosen = max(results, key=lambda r: r["rps"])
            out["endpoints"][name] = {"wrk": chosen, "wrk_rounds": results}
        if paced:
            count = cfg.paced_rate * cfg.paced_seconds
            for name, (path, _) in ENDPOINTS.items():
                # An endpoint that could not keep up (the textbook receiver) leaves a backlog
                # of queued requests and database work: the next one must not inherit it.
                procs.wait_settled(server)
                wait_quiet(min(cfg.quiet_wait, 15))
                meter.start()
                result = run_loadgen(server.port, path, pools["paced"], count, cfg.paced_rate)
                result["cpu"] = meter.stop()
                out["endpoints"][name]["paced"] = result
                say(
                    f"  {name:8s} at {cfg.paced_rate}/s: p50 {result['p50_ms']:.1f} ms, "
                    f"p99 {result['p99_ms']:.1f} ms, achieved {result['rate_achieved']:.0f}/s, "
                    f"loadgen CPU {result['loadgen_cpu_pct']:.0f}%, p99 second by second "
                    f"{' '.join(f'{v:.0f}' for v in result['p99_by_second_ms'])} ms"
                )
        stored = hubdb.counts()
        out["stored"] = stored
        # Every 2xx answer of the run: the check, the warm-up, the rounds, the fixed rate.
        answered = {
            name: 1
            + warm[name]["ok"]
            + sum(r["ok"] for r in rounds[name])
            + (out["endpoints"][name].get("paced", {}).get("statuses", {}).get(str(code), 0))
            for name, (_, code) in ENDPOINTS.items()
        }
        out["answered_2xx"] = answered
        return out
    finally:
        server.stop()
        flush_redis(HUB_REDIS_DB)


def run(cfg: Config, wrk: str) -> dict:
    result = {"primary": measure_config(cfg, wrk, cfg.gunicorn, "p", paced=True)}
    if cfg.compare_gunicorn:
        result["alternatives"] = []
        for n, args in enumerate(cfg.compare_gunicorn):
            alt_cfg = cfg.but(rounds=1, receive_seconds=min(cfg.receive_seconds, 5))
            result["alternatives"].append(
                measure_config(alt_cfg, wrk, args, f"alt{n}", paced=False)
            )
    return result


def summarize(cfg: Config, data: dict) -> dict:
    eps = data["primary"]["endpoints"]
    rps = {name: eps[name]["wrk"]["rps"] for name in eps}
    paced_p99 = eps["hub"].get("paced", {}).get("p99_ms")
    return {
        "hub_over_bare": rps["hub"] / rps["bare"] if rps["bare"] else 0.0,
        "hub_over_textbook": rps["hub"] / rps["textbook"] if rps["textbook"] else 0.0,
        "hub_paced_p99_ms": paced_p99,
        "targets": {
            "hub >= 0.5 x bare throughput": rps["hub"] >= 0.5 * rps["bare"],
            "hub >= 2.5 x textbook throughput": rps["hub"] >= 2.5 * rps["textbook"],
            f"hub p99 < 25 ms at {cfg.paced_rate}/s": paced_p99 is not None and paced_p99 < 25,
        },
    }
