"""`make bench`: the hub against baselines, in one run, on this machine, loopback only.

Part 1 (receive): the hub's POST /hooks/<slug>/ against a bare 204 view (no middleware) and a
textbook DRF receiver, each baseline at the better of two gunicorn set-ups; wrk for throughput,
a constant-rate generator for p99.
Part 2 (fan-out): events fanned out to three subscribers by the hub's real web server + Celery
worker; paced latency, burst throughput, a hanging subscriber, and the hub's burst with
ordering and with coalescing turned on. The relay's baselines (bench/relay_baselines.py):
django-webhook in its own virtualenv at its best (CELERY_DB_REUSE_MAX and CONN_MAX_AGE as the
hub's, the better of a threads and a prefork worker; its default configuration once more for
reference), and a bare sender, the physical anchor (the same signed requests from one process
per core over kept-alive http.client connections, no database); the hub's burst is printed as
a ratio of each.
Part 3 (priority): grid signals to a high-priority subscription while 5,000 deliveries of a
normal one are backlogged (bench/energy_bench.py). Results are printed and written to
bench/results/ as JSON.

    make bench                              # everything, about 9-10 minutes (+ admin scale)
    make bench BENCH_ARGS=--quick           # shorter phases, about 6 minutes
    make bench BENCH_ARGS="--only receive"  # one part (receive, fanout, priority)
    make bench BENCH_ARGS=--profile         # also py-spy profiles and an SQL census

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379; uses
the databases hub_bench and djw_bench (dropped and created here) and Redis dbs 13 and 14.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, bench/ itself would be first on the path and shadow the standard library.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import common, procs  # noqa: E402
from bench.common import (  # noqa: E402
    BENCH,
    DJW_DB,
    HUB_DB,
    PYTHON,
    REPO,
    RESULTS,
    WORK,
    Config,
    say,
    table,
    verdict,
    whole,
)
from bench.fanout_report import print_fanout, us_per  # noqa: E402

# The hub's web server as docker-compose.yml runs it (granian ... hub.asgi:application).
DEFAULT_SERVER = "--workers 2"


def parse_args(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark the hub against baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases, one round")
    parser.add_argument(
        "--only",
        choices=["receive", "fanout", "priority", "profile"],
        help="run one part (profile: only it)",
    )
    parser.add_argument("--events", type=int, help="events per fan-out run (2000; quick 600)")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run (6; quick 5)")
    parser.add_argument("--rounds", type=int, help="wrk rounds per endpoint (2; quick 1)")
    parser.add_argument("--paced-seconds", type=int, help="seconds at the fixed rate (6; quick 5)")
    parser.add_argument("--paced-rate", type=int, default=500, help="receive p99 rate (500)")
    parser.add_argument("--fanout-rate", type=int, default=200, help="paced fan-out rate (200)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f'options of the hub\'s Granian ("{DEFAULT_SERVER}")',
    )
    parser.add_argument(
        "--compare",
        action="append",
        metavar="COMMAND",
        help='another hub server to measure alongside, a whole command line: "granian ... APP", '
        '"uvicorn APP ..." or "gunicorn APP ..." (the run adds the address); "@PATH gunicorn '
        '..." runs it from another checkout of the hub',
    )
    parser.add_argument("--concurrency", type=int, default=16, help="worker threads (16)")
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=2,
        help="the hub's Celery worker processes, one per core (2); django-webhook's threads "
        "set-up has as many",
    )
    parser.add_argument(
        "--hang-timeout", type=int, default=15, help="the subscriptions' timeout_seconds (15)"
    )
    parser.add_argument("--skip-djwebhook", action="store_true", help="no django-webhook runs")
    parser.add_argument(
        "--djw-hang",
        action="store_true",
        help="django-webhook with a hanging subscriber too (default unless --quick)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy profiles + SQL census")
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also the hub burst with CELERY_DB_REUSE_MAX set (bench/settings_reuse.py)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=int,
        default=20,
        help="seconds to wait, before each part, for other processes to calm down (20)",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep hub_bench and djw_bench")
    parser.add_argument("--skip-admin-scale", action="store_true", help="skip bench/admin_scale.py")
    args = parser.parse_args(argv)

    quick = args.quick
    parts = {"receive", "fanout", "djw", "priority"}
    if args.only == "receive":
        parts = {"receive"}
    elif args.only == "fanout":
        parts = {"fanout", "djw"}
    elif args.only == "priority":
        parts = {"priority"}
    elif args.only == "profile":
        parts = set()
    if args.skip_djwebhook:
        parts.discard("djw")
    cfg = Config(
        quick=quick,
        server=shlex.split(args.server),
        compare=[shlex.split(c) for c in args.compare or []],
        events=args.events or (600 if quick else 2000),
        receive_seconds=args.seconds or (5 if quick else 6),
        paced_seconds=args.paced_seconds or (5 if quick else 6),
        paced_rate=args.paced_rate,
        fanout_rate=args.fanout_rate,
        connections=args.connections,
        rounds=args.rounds or (1 if quick else 2),
        hang_timeout=args.hang_timeout,
        concurrency=args.concurrency,
        worker_processes=args.worker_processes,
        parts=parts,
        profile=args.profile or args.only == "profile",
        djw_hang=args.djw_hang or not quick,
        experiments=args.experiments,
        quiet_wait=args.quiet_wait,
        keep_db=args.keep_db,
        skip_admin_scale=args.skip_admin_scale,
        run_dir=WORK,
    )
    return cfg


# Printing ------------------------------------------------------------------------------------


def print_receive(cfg: Config, data: dict, summary: dict) -> None:
    eps = data["systems"]
    print(
        f"\nPart 1 - receive  (wrk -t1 -c{cfg.connections} -d{cfg.receive_seconds}s, best of "
        f"{cfg.rounds} round(s), every system on its own server, rounds alternated; fixed "
        f"{cfg.paced_rate}/s for {cfg.paced_seconds} s from bench/loadgen.py)"
    )
    rows = []
    for name, ep in eps.items():
        w, p = ep["wrk"], ep.get("paced", {})
        n = w["requests"]
        rows.append(
            [
                name,
                whole(w["rps"]),
                " ".join(whole(r["rps"]) for r in ep["wrk_rounds"]),
                whole(w["p99_us"] / 1000),
                whole(p.get("rate_achieved")),
                whole(p.get("p50_ms")),
                whole(p.get("p99_ms")),
                us_per(w["cpu"], "server", n),
                us_per(w["cpu"], "postgres", n),
                whole(w["non2xx"] + w["errors_connect"] + w["errors_read"] + w["errors_timeout"]),
            ]
        )
    print(
        table(
            [
                "system",
                "req/s",
                "rounds",
                "p99 ms",
                f"@{cfg.paced_rate}/s got",
                "p50 ms",
                "p99 ms",
                "server CPU us/req",
                "postgres us/req",
                "errors",
            ],
            rows,
        )
    )
    other = max(ep["wrk"]["cpu"]["other_cpu_pct"] for ep in eps.values())
    print(
        f"hub/bare = {summary['hub_over_bare']:.2f} (bare at its best: {summary['best_bare']})   "
        f"hub/textbook = {summary['hub_over_textbook']:.2f} (textbook at its best: "
        f"{summary['best_textbook']})   other processes on the machine <= {other:.0f}% of a core"
    )
    hub = eps[summary["hub"]]
    for name, ep in eps.items():
        if ep["kind"] == "hub" and name != summary["hub"]:
            ratios = [
                f"{mine['rps'] / theirs['rps']:.2f}"
                for mine, theirs in zip(hub["wrk_rounds"], ep["wrk_rounds"], strict=False)
            ]
            print(f"hub / {name}, round by round: {' '.join(ratios)}")
    stored = data["stored"]
    print(f"stored rows: hub {stored['events']}, textbook {stored['textbook_events']}")


def print_targets(summaries: dict) -> None:
    print("\nTargets")
    for part in summaries.values():
        for label, ok in part["targets"].items():
            print(f"  {verdict(ok):7s} {label}")


# Main --------------------------------------------------------------------------------------


def run_admin_scale(cfg: Config) -> dict | None:
    script = BENCH / "admin_scale.py"
    everything = {"receive", "fanout", "djw", "priority"}
    if cfg.skip_admin_scale or cfg.parts != everything or not script.exists():
        return None
    say("running bench/admin_scale.py")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BENCH_QUICK": "1" if cfg.quick else "0"}
    started = time.monotonic()
    try:
        done = subprocess.run([str(PYTHON), str(script)], cwd=REPO, env=env, timeout=900)
        code = done.returncode
    except subprocess.TimeoutExpired:
        code = None
    return {"exit_code": code, "seconds": round(time.monotonic() - started, 1)}


def main(argv: list[str]) -> int:
    cfg = parse_args(argv)
    procs.install_cleanup()
    started = time.time()
    for stale in ("logs", "profile", "pools"):  # this run's logs and profiles only
        shutil.rmtree(cfg.run_dir / stale, ignore_errors=True)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    common.check_services()
    wrk = common.ensure_wrk() if "receive" in cfg.parts or cfg.profile else ""

    from bench import hubdb

    say(f"creating database {HUB_DB} and migrating (bench.settings)")
    common.recreate_database(HUB_DB)
    hubdb.migrate()
    hubdb.create_source()

    results: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "config": {k: v for k, v in cfg.__dict__.items() if k != "run_dir"},
    }
    results["config"]["parts"] = sorted(cfg.parts)
    summaries: dict = {}
    try:
        if "receive" in cfg.parts:
            from bench import receive_bench

            results["receive"] = receive_bench.run(cfg, wrk)
            summaries["receive"] = receive_bench.summarize(cfg, results["receive"])
        if "fanout" in cfg.parts:
            from bench import fanout_bench

            results["fanout"] = fanout_bench.run(cfg)
            summaries["fanout"] = fanout_bench.summarize(results["fanout"])
        if "priority" in cfg.parts:
            from bench import energy_bench

            results["priority"] = energy_bench.run_priority(cfg)
            summaries["priority"] = energy_bench.summarize_priority(results["priority"])
        if cfg.profile:
            from bench import profiling

            results["profile"] = profiling.run(cfg, wrk)
        results["admin_scale"] = run_admin_scale(cfg)
    finally:
        procs.stop_all()
        results["summary"] = summaries
        results["seconds"] = round(time.time() - started, 1)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
        path = RESULTS / f"bench-{stamp}.json"
        path.write_text(json.dumps(results, indent=1, default=str))
        (RESULTS / "latest.json").write_text(path.read_text())
        shutil.rmtree(WORK / "pools", ignore_errors=True)
        for db in (common.HUB_REDIS_DB, common.DJW_REDIS_DB):
            common.flush_redis(db)
        if not cfg.keep_db:
            hubdb.close()
            common.drop_database(HUB_DB)
            common.drop_database(DJW_DB)

    if "receive" in results:
        print_receive(cfg, results["receive"], summaries["receive"])
    if "fanout" in results:
        print_fanout(cfg, results["fanout"], summaries["fanout"])
    if "priority" in results:
        from bench import energy_bench

        energy_bench.print_priority(results["priority"])
    if "profile" in results:
        from bench import profiling

        profiling.print_report(results["profile"])
    print_targets(summaries)
    print(f"\n{results['seconds']:.0f} s in all; results in {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
