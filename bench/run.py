"""`make bench`: the hub against baselines, in one run, on this machine, loopback only.

Part 1 (receive): the hub's POST /hooks/<slug>/ against a bare 204 view and a textbook DRF
receiver, served by the same gunicorn; wrk for throughput, a constant-rate generator for p99.
Part 2 (fan-out): events fanned out to three subscribers by the hub's real gunicorn + Celery
worker, against django-webhook in its own virtualenv; paced latency, burst throughput, a
hanging subscriber, and the hub's burst with ordering and with coalescing turned on.
Part 3 (priority): grid signals to a high-priority subscription while 5,000 deliveries of a
normal one are backlogged (bench/energy_bench.py). Results are printed and written to
bench/results/ as JSON.

    make bench                              # everything, about 6-8 minutes
    make bench BENCH_ARGS=--quick           # shorter phases, about 3-4 minutes
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

DEFAULT_GUNICORN = "-w 4 -k receivers.worker.HubWorker --threads 4 --reuse-port"
# Plain gthread is the worker the hub's one builds on: compared so the README can say what the
# event loop's batches change. Without --reuse-port all workers accept from one socket, and
# wrk's 16 keep-alive connections mostly land on one or two of them (15 and 1 was common).
COMPARE_GUNICORN = [
    "-w 4 -k gthread --threads 4 --reuse-port",
    "-w 4 -k receivers.worker.HubWorker --threads 4",
    "-w 4 -k sync",
]


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
    parser.add_argument("--gunicorn", default=DEFAULT_GUNICORN, help=f'"{DEFAULT_GUNICORN}"')
    parser.add_argument(
        "--compare-gunicorn",
        action="append",
        metavar="ARGS",
        help=f"other gunicorn settings to try (default unless --quick: {COMPARE_GUNICORN})",
    )
    parser.add_argument("--no-compare", action="store_true", help="try no other gunicorn settings")
    parser.add_argument("--concurrency", type=int, default=16, help="worker threads (16)")
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=2,
        help="Celery worker processes per system, one per core (2)",
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
    if args.no_compare or quick and not args.compare_gunicorn:
        compare = []
    else:
        compare = args.compare_gunicorn or COMPARE_GUNICORN
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
        gunicorn=shlex.split(args.gunicorn),
        compare_gunicorn=[shlex.split(c) for c in compare],
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


def us_per(cpu: dict, key: str, count: float) -> str:
    return whole(1e6 * cpu.get(key, 0.0) / count) if count else "-"


def print_receive(cfg: Config, data: dict, summary: dict) -> None:
    primary = data["primary"]
    eps = primary["endpoints"]
    print(
        f"\nPart 1 - receive  (gunicorn {' '.join(primary['gunicorn'])}; wrk -t1 "
        f"-c{cfg.connections} -d{cfg.receive_seconds}s, best of {cfg.rounds} round(s); "
        f"fixed {cfg.paced_rate}/s for {cfg.paced_seconds} s from bench/loadgen.py)"
    )
    rows = []
    for name in ("bare", "textbook", "hub"):
        w, p = eps[name]["wrk"], eps[name].get("paced", {})
        n = w["requests"]
        rows.append(
            [
                name,
                whole(w["rps"]),
                whole(w["p50_us"] / 1000),
                whole(w["p99_us"] / 1000),
                whole(p.get("rate_achieved")),
                whole(p.get("p50_ms")),
                whole(p.get("p99_ms")),
                us_per(w["cpu"], "gunicorn", n),
                us_per(w["cpu"], "postgres", n),
                us_per(w["cpu"], "redis", n),
                whole(w["non2xx"] + w["errors_connect"] + w["errors_read"] + w["errors_timeout"]),
            ]
        )
    print(
        table(
            [
                "endpoint",
                "req/s",
                "p50 ms",
                "p99 ms",
                f"@{cfg.paced_rate}/s got",
                "p50 ms",
                "p99 ms",
                "gunicorn CPU us/req",
                "postgres us/req",
                "redis us/req",
                "errors",
            ],
            rows,
        )
    )
    loadgen_cpu = max(eps[n].get("paced", {}).get("loadgen_cpu_pct", 0) for n in eps)
    wrk_cpu = max(100 * eps[n]["wrk"]["cpu"]["client"] / eps[n]["wrk"]["cpu"]["wall"] for n in eps)
    other = max(eps[n]["wrk"]["cpu"]["other_cpu_pct"] for n in eps)
    print(
        f"hub/bare = {summary['hub_over_bare']:.2f}   hub/textbook = "
        f"{summary['hub_over_textbook']:.2f}   (load generators: wrk <= {wrk_cpu:.0f}% of a "
        f"core, loadgen <= {loadgen_cpu:.0f}%; other processes on the machine <= {other:.0f}%)"
    )
    stored, answered = primary["stored"], primary["answered_2xx"]
    print(
        f"stored rows: hub {stored['events']} for {answered['hub']} answered 2xx, textbook "
        f"{stored['textbook_events']} for {answered['textbook']}"
    )
    for alt in data.get("alternatives", []):
        eps_alt = alt["endpoints"]
        print(
            f"  other settings, gunicorn {' '.join(alt['gunicorn'])}: "
            + ", ".join(f"{n} {whole(eps_alt[n]['wrk']['rps'])} req/s" for n in eps_alt)
            + f"  (hub/bare {eps_alt['hub']['wrk']['rps'] / eps_alt['bare']['wrk']['rps']:.2f},"
            f" hub/textbook {eps_alt['hub']['wrk']['rps'] / eps_alt['textbook']['wrk']['rps']:.2f})"
        )


def print_fanout(cfg: Config, data: dict, summary: dict) -> None:
    print(
        f"\nPart 2 - fan-out  ({data['events']} events x 3 subscribers; {cfg.worker_processes} "
        f"worker process(es) --pool threads --concurrency {cfg.concurrency}; paced at "
        f"{data['rate']} events/s; burst = backlog "
        f"drained after the worker starts; hang = subscriber c never answers, timeout "
        f"{cfg.hang_timeout} s)"
    )
    rows = []
    for key, label in (("hub", "hub"), ("django_webhook", "django-webhook")):
        run = data.get(key)
        if not run:
            continue
        paced, burst, hang = run["paced"], run["burst"], run.get("hang")
        lat = paced.get("latency_ms", {})
        deliveries = burst["delivered"] or 1
        healthy = burst["healthy_only"].get("deliveries_per_s")
        rows.append(
            [
                label,
                whole(paced.get("deliveries_per_s")),
                f"{paced['delivered']}/{paced['expected']}",
                whole(lat.get("p50")),
                whole(lat.get("p99")),
                whole(burst.get("deliveries_per_s")),
                whole(burst.get("peak_1s")),
                us_per(burst["cpu"], "worker", deliveries),
                us_per(burst["cpu"], "postgres", deliveries),
                whole(healthy),
                whole(hang.get("deliveries_per_s", 0.0)) if hang else "-",
                f"{hang.get('deliveries_per_s', 0.0) / healthy:.2f}" if hang and healthy else "-",
            ]
        )
    print(
        table(
            [
                "system",
                "paced deliv/s",
                "delivered",
                "p50 ms",
                "p99 ms",
                "burst deliv/s",
                "best 1 s",
                "worker CPU us/deliv",
                "postgres us/deliv",
                "a+b deliv/s",
                "a+b with c hanging",
                "ratio",
            ],
            rows,
        )
    )
    if data["hub"].get("options"):
        from bench import energy_bench

        energy_bench.print_options(data["hub"]["options"], summary["options"])
    if summary.get("hub_over_django_webhook"):
        print(f"hub/django-webhook (burst deliveries/s) = {summary['hub_over_django_webhook']:.1f}")
    experiment = data["hub"].get("experiment_db_reuse")
    if experiment:
        base = data["hub"]["burst"]
        print(
            "experiment, hub burst with CELERY_DB_REUSE_MAX=1000 (bench/settings_reuse.py): "
            f"{whole(experiment.get('deliveries_per_s'))} deliveries/s (vs "
            f"{whole(base.get('deliveries_per_s'))}), {experiment['pg_sessions_opened']} new "
            f"PostgreSQL sessions (vs {base['pg_sessions_opened']}), postgres "
            f"{us_per(experiment['cpu'], 'postgres', experiment['delivered'] or 1)} us/delivery "
            f"(vs {us_per(base['cpu'], 'postgres', base['delivered'] or 1)})"
        )
    for key, label in (("hub", "hub"), ("django_webhook", "django-webhook")):
        run = data.get(key)
        if not run:
            continue
        burst = run["burst"]
        others = max(
            r["cpu"]["other_cpu_pct"] for r in run.values() if isinstance(r, dict) and "cpu" in r
        )
        print(
            f"{label}: burst of {burst['events_accepted']} events -> "
            f"{burst['messages_queued_by_receive']} broker messages queued by receiving, "
            f"{burst['pg_sessions_opened']} new PostgreSQL sessions for {burst['delivered']} "
            f"deliveries, {burst['duplicates']} duplicates; other processes <= {others:.0f}% "
            "of a core"
        )


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
