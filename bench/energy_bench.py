"""The energy options under load (docs/energy.md), on the hub's real gunicorn and Celery workers.

In the fan-out part (fanout_bench.run calls option_bursts): the burst again with every
subscription ordered by device, then coalescing meter readings by device; each is compared
with the plain burst of the same run. Events come from 500 devices (`data.applianceID`), four
event types in turn; coalescing applies to `ev/measurement`, one event in four, so that about
three readings in four of those are superseded.

The priority part (`--only priority`): 5,000 deliveries are backlogged on a normal subscription
(it is paused while their events arrive, then resumed), and at that moment grid signals for a
high-priority subscription start arriving at a fixed rate; receive-to-delivered of the signals
that arrived while the backlog was still draining. The same again with the signals' subscription
at normal priority, to show what the priority changes.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench import hubdb, procs
from bench.common import (
    CELERY,
    REPO,
    SECRET,
    Config,
    CpuMeter,
    hub_env,
    percentile,
    say,
    wait_quiet,
)
from bench.fanout_bench import DEVICES, NAMES, Hub, Target, accepted, analyse, receive_backlog
from bench.pool import write_pool
from bench.receive_bench import run_loadgen

OPTIONS = {
    "ordering": {"ordering_key": "data.applianceID"},
    "coalescing": {"coalesce": [{"types": ["ev/measurement"], "key": "data.applianceID"}]},
}
ENDED = ("succeeded", "failed", "expired", "superseded")


def unfinished(expected: int) -> int:
    counts = hubdb.status_counts()
    return expected - sum(counts.get(status, 0) for status in ENDED)


def wait_ended(expected: int, limit: float) -> bool:
    """Until every delivery exists and has ended (sent or superseded), or `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if unfinished(expected) <= 0:
            return True
        time.sleep(0.2)
    return False


def option_burst(system: Hub, pool_path: Path, start: int, count: int, label: str) -> dict:
    say(f"fan-out: {system.name}, {count} events burst with {label}")
    _, ok = receive_backlog(system, pool_path, start, count)
    meter = CpuMeter({"gunicorn": system.web}, system.database)
    meter.start()
    system.start_worker()
    meter.groups["worker"] = system.worker
    complete = wait_ended(ok * len(NAMES), 60 + count * len(NAMES) / 100)
    cpu = meter.stop()
    rows = system.target.dump()
    system.stop()
    result = analyse(rows, None, NAMES)
    statuses = hubdb.status_counts()
    ended = sum(statuses.get(status, 0) for status in ENDED)
    seconds = result.get("seconds") or float("nan")
    result.update(
        {
            "complete": complete,
            "expected": ok * len(NAMES),
            "statuses": statuses,
            "resolved_per_s": ended / seconds,
            "cpu": cpu,
        }
    )
    say(
        f"  sent {result['delivered']} ({statuses.get('superseded', 0)} superseded): "
        f"{result.get('deliveries_per_s', 0):.0f} sent/s, {result['resolved_per_s']:.0f} "
        "ended/s"
    )
    return result


def option_bursts(cfg: Config, hub: Hub, pool_path: Path, start: int) -> dict:
    """fanout_bench's burst with each option on every subscription, from pool offsets
    start and start + events."""
    out = {}
    try:
        for index, (label, options) in enumerate(OPTIONS.items()):
            hubdb.set_subscriptions(hub.target.urls(), cfg.hang_timeout, **options)
            out[label] = option_burst(hub, pool_path, start + index * cfg.events, cfg.events, label)
    finally:
        hub.stop()
        hubdb.set_subscriptions(hub.target.urls(), cfg.hang_timeout)
    return out


# Priority ------------------------------------------------------------------------------------

BACKLOG = 5000
SIGNAL = "grid-signal-processor/limitation-of-power-consumption/set"
HIGH_CONCURRENCY = 4


class PriorityHub(Hub):
    """The hub with compose's workers: `-Q celery,low` ones and one `-Q high` (worker-high)."""

    def __init__(self, cfg: Config, target: Target, high_worker: bool):
        super().__init__(cfg, target)
        self.high_worker = high_worker
        self.high: procs.Proc | None = None

    def worker_cmd(self, beat: bool):
        cmd, env, cwd = super().worker_cmd(beat)
        queues = "celery,low" if self.high_worker else "high,celery,low"
        return [*cmd, "-Q", queues], env, cwd

    def start_worker(self) -> None:
        super().start_worker()
        if self.high_worker:
            cmd = [str(CELERY), "-A", "hub", *self.worker_args(), "-Q", "high", "-n", "high@%h"]
            env = hub_env(HUB_WORKER_CONCURRENCY=str(HIGH_CONCURRENCY))
            cmd[cmd.index("--concurrency") + 1] = str(HIGH_CONCURRENCY)
            self.high = procs.Proc("hub-worker-high", cmd, env, REPO, self.cfg.run_dir / "logs")

    def stop_worker(self) -> None:
        super().stop_worker()
        if self.high is not None:
            self.high.stop(grace=5)
            self.high = None


def priority_round(hub: PriorityHub, pools: dict[str, Path], rate: int, seconds: int) -> dict:
    """One backlog of BACKLOG bulk deliveries, and signals paced at `rate` while it drains."""
    hub.clear()
    hub.target.reset()
    hub.start_web()
    hub.start_worker()
    procs.wait_settled(hub.web, hub.worker)
    for name in ("bulk", "signals"):
        load = run_loadgen(hub.web.port, hub.receive_path, pools[f"warm-{name}"], 20, 100)
        assert accepted(load) == 20, load["statuses"]
    got, ok = hub.target.wait_for(40, ("bulk", "signals"), stall=30, limit=60)
    if not ok:
        raise RuntimeError(f"the warm-up reached {got} of 40 deliveries\n{hub.worker.tail()}")
    hub.target.reset()
    hubdb.set_paused("bulk", True)
    load = run_loadgen(hub.web.port, hub.receive_path, pools["bulk"], BACKLOG, 0, concurrency=16)
    backlog = accepted(load)
    deadline = time.monotonic() + 60
    while hubdb.status_counts().get("pending", 0) < backlog and time.monotonic() < deadline:
        time.sleep(0.1)
    hubdb.set_paused("bulk", False)
    signals = run_loadgen(
        hub.web.port, hub.receive_path, pools["signals"], rate * seconds, rate, record=True
    )
    expected = backlog + accepted(signals)
    hub.target.wait_for(expected, ("bulk", "signals"), stall=30, limit=120)
    rows = hub.target.dump()
    hub.stop()
    answers = {a[0]: a[1] for a in signals.pop("answers") if 200 <= a[2] < 300}
    bulk_times = sorted(row[0] for row in rows if row[1] == "bulk")
    drained_at = bulk_times[-1] if bulk_times else 0.0
    during = [
        (row[0] - answers[row[2]]) * 1000
        for row in rows
        if row[1] == "signals" and row[2] in answers and answers[row[2]] < drained_at
    ]
    return {
        "backlog": backlog,
        "bulk_delivered": len(bulk_times),
        "bulk_seconds": (bulk_times[-1] - bulk_times[0]) if len(bulk_times) > 1 else None,
        "signals_sent": accepted(signals),
        "signals_delivered": sum(1 for row in rows if row[1] == "signals"),
        "latencies_during_backlog_ms": during,
    }


def priority_pools(rate: int, seconds: int) -> dict[str, tuple[int, dict]]:
    """Each pool of a round: (events, shape of its events)."""
    return {
        "bulk": (BACKLOG, {"event_type": "ev/measurement", "devices": DEVICES}),
        "signals": (rate * seconds, {"event_type": SIGNAL}),
        "warm-bulk": (20, {"event_type": "ev/measurement"}),
        "warm-signals": (20, {"event_type": SIGNAL}),
    }


def run_priority(cfg: Config, rate: int = 50, seconds: int = 4, rounds: int | None = None) -> dict:
    rounds = rounds or (1 if cfg.quick else 3)
    hubdb.migrate_now()
    target = Target(cfg)
    out: dict = {"rate": rate, "seconds": seconds, "rounds": rounds, "backlog": BACKLOG}
    shapes = priority_pools(rate, seconds)
    pools = {name: cfg.run_dir / "pools" / f"priority-{name}.txt" for name in shapes}
    try:
        out["quiet_wait_load_pct"] = wait_quiet(cfg.quiet_wait)
        for label, high in (("high", True), ("normal", False)):
            runs = []
            for number in range(rounds):
                for name, (count, shape) in shapes.items():
                    write_pool(pools[name], SECRET, count, f"p{label}{number}{name}", **shape)
                hubdb.delete_subscriptions()
                hubdb.create_subscription("bulk", f"{target.base}/ok/bulk", ["ev/measurement"])
                hubdb.create_subscription(
                    "signals",
                    f"{target.base}/ok/signals",
                    ["grid-signal-processor/*"],
                    priority=label,
                )
                say(f"priority: signals at {label} priority, round {number + 1} of {rounds}")
                hub = PriorityHub(cfg, target, high_worker=high)
                try:
                    runs.append(priority_round(hub, pools, rate, seconds))
                finally:
                    hub.stop()
                lat = runs[-1]["latencies_during_backlog_ms"]
                say(
                    f"  {len(lat)} signals during the backlog: p50 {percentile(lat, 50):.0f} ms, "
                    f"p99 {percentile(lat, 99):.0f} ms, max {max(lat, default=0):.0f} ms"
                )
            out[label] = summarize_runs(runs)
    finally:
        target.proc.stop()
        hubdb.delete_subscriptions()
    return out


def summarize_runs(runs: list[dict]) -> dict:
    latencies = [ms for run in runs for ms in run["latencies_during_backlog_ms"]]
    return {
        "runs": runs,
        "count": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "complete": all(
            run["bulk_delivered"] >= run["backlog"]
            and run["signals_delivered"] >= run["signals_sent"]
            for run in runs
        ),
    }


def summarize_priority(data: dict) -> dict:
    high = data["high"]
    return {
        "high_p99_ms": high["p99_ms"],
        "normal_p99_ms": data["normal"]["p99_ms"],
        "targets": {
            f"high priority p99 < 250 ms behind {BACKLOG} backlogged deliveries": high["count"] > 0
            and high["p99_ms"] < 250
            and high["complete"],
        },
    }


def summarize_options(options: dict, plain_burst: dict) -> dict:
    plain = plain_burst.get("deliveries_per_s") or 0.0
    ratios = {
        label: (run.get("deliveries_per_s") or 0.0) / plain if plain else None
        for label, run in options.items()
    }
    return {
        "ratios": ratios,
        "targets": {
            f"fan-out with {label} >= 0.5 of plain (sent/s)": None
            if ratio is None
            else ratio >= 0.5 and options[label]["complete"]
            for label, ratio in ratios.items()
        },
    }


def print_priority(data: dict) -> None:
    print(
        f"\nPart 3 - priority  ({BACKLOG} deliveries backlogged on a normal subscription, then "
        f"grid signals at {data['rate']}/s for {data['seconds']} s to another subscription; "
        f"{data['rounds']} round(s); receive-to-delivered of the signals received while the "
        "backlog drained)"
    )
    for label in ("high", "normal"):
        run = data[label]
        bulk = [r["bulk_seconds"] for r in run["runs"] if r["bulk_seconds"]]
        drain = f"{BACKLOG / (sum(bulk) / len(bulk)):.0f}/s" if bulk else "-"
        worker = "own -Q high worker" if label == "high" else "the normal workers"
        print(
            f"  signals at {label} priority ({worker}): {run['count']} signals, p50 "
            f"{run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, max {run['max_ms']:.0f} ms; "
            f"backlog drained at {drain}"
        )


def print_options(options: dict, summary: dict) -> None:
    for label, run in options.items():
        statuses = run["statuses"]
        ratio = summary["ratios"].get(label)
        print(
            f"hub burst with {label}: {run.get('deliveries_per_s', 0):.0f} sent/s "
            f"({'-' if ratio is None else f'{ratio:.2f}'} of plain), "
            f"{run['resolved_per_s']:.0f} ended/s; {statuses.get('succeeded', 0)} sent, "
            f"{statuses.get('superseded', 0)} superseded, {run['duplicates']} duplicates"
        )
