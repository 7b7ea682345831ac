"""Printing part 2 (fan-out): the hub, django-webhook at its best and in its default
configuration, the bare sender anchor, and the ratios the relay's targets are judged by."""

from __future__ import annotations

from bench.common import Config, table, whole

HEADERS = [
    "system",
    "paced deliv/s",
    "delivered",
    "p50 ms",
    "p99 ms",
    "burst deliv/s",
    "best 1 s",
    "worker CPU us/deliv",
    "postgres us/deliv",
    "PG sessions",
    "a+b deliv/s",
    "a+b with c hanging",
    "ratio",
]


def us_per(cpu: dict, key: str, count: float) -> str:
    return whole(1e6 * cpu.get(key, 0.0) / count) if count else "-"


def systems(data: dict) -> list[tuple[str, dict]]:
    """(label, run) of every system measured, in the table's order."""
    out = [("hub", data["hub"])]
    djw, default = data.get("django_webhook"), data.get("django_webhook_default")
    if djw:
        out.append((f"django-webhook (best: {djw['worker']}, reuse)", djw))
    if default:
        out.append(("django-webhook, default config (for reference)", default))
    bare = data.get("bare_sender")
    if bare:
        out.append((f"bare sender ({bare['processes']} processes, no database)", bare))
    return out


def row(label: str, run: dict) -> list:
    paced, burst, hang = run.get("paced"), run["burst"], run.get("hang")
    lat = paced.get("latency_ms", {}) if paced else {}
    deliveries = burst["delivered"] or 1
    healthy = burst["healthy_only"].get("deliveries_per_s") if "healthy_only" in burst else None
    hang_rate = hang.get("deliveries_per_s", 0.0) if hang else None
    worker = "sender" if "sender" in burst else "worker"
    return [
        label,
        whole(paced.get("deliveries_per_s")) if paced else "-",
        f"{paced['delivered']}/{paced['expected']}" if paced else "-",
        whole(lat.get("p50")),
        whole(lat.get("p99")),
        whole(burst.get("deliveries_per_s")),
        whole(burst.get("peak_1s")),
        us_per(burst["cpu"], worker, deliveries),
        us_per(burst["cpu"], "postgres", deliveries) if worker == "worker" else "-",
        whole(burst.get("pg_sessions_opened")),
        whole(healthy),
        whole(hang_rate),
        f"{hang_rate / healthy:.2f}" if hang and healthy else "-",
    ]


def ratio(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_baselines(data: dict, summary: dict) -> None:
    djw, default, bare = (
        data.get(k) for k in ("django_webhook", "django_webhook_default", "bare_sender")
    )
    if djw:
        tried = ", ".join(
            f"{label}: {whole(run.get('deliveries_per_s'))}/s"
            for label, run in djw["tried"].items()
        )
        print(
            "django-webhook worker set-ups tried, each with CELERY_DB_REUSE_MAX="
            f"{djw['db_reuse_max']} "
            f"(burst deliveries/s): {tried}"
        )
        print(f"django-webhook at its best: {djw['config']}")
    if default:
        print(f"django-webhook default config (for reference): {default['config']}")
    if bare:
        rounds = " ".join(whole(r.get("deliveries_per_s")) for r in bare["rounds"])
        print(
            "bare sender: the hub burst's events, signed as the hub signs them, "
            f"{bare['processes']} processes (one per core) each on one kept-alive http.client "
            f"connection, no database; rounds {rounds} deliveries/s, the best counts"
        )
    print(
        "hub relay (burst deliveries/s) / django-webhook at its best = "
        f"{ratio(summary.get('hub_over_django_webhook'))};  / bare sender = "
        f"{ratio(summary.get('hub_over_bare_sender'), 2)};  / django-webhook default config "
        f"(for reference) = {ratio(summary.get('hub_over_django_webhook_default'))}"
    )


def print_experiment(hub: dict) -> None:
    experiment = hub.get("experiment_db_reuse")
    if not experiment:
        return
    base = hub["burst"]
    print(
        "experiment, hub burst with CELERY_DB_REUSE_MAX=1000 (bench/settings_reuse.py): "
        f"{whole(experiment.get('deliveries_per_s'))} deliveries/s (vs "
        f"{whole(base.get('deliveries_per_s'))}), {experiment['pg_sessions_opened']} new "
        f"PostgreSQL sessions (vs {base['pg_sessions_opened']}), postgres "
        f"{us_per(experiment['cpu'], 'postgres', experiment['delivered'] or 1)} us/delivery "
        f"(vs {us_per(base['cpu'], 'postgres', base['delivered'] or 1)})"
    )


def print_bursts(data: dict) -> None:
    for label, run in systems(data):
        burst = run["burst"]
        phases = [r for r in run.values() if isinstance(r, dict) and "cpu" in r]
        others = max(r["cpu"]["other_cpu_pct"] for r in [burst, *phases])
        if "sender" in burst:
            print(
                f"{label}: {burst['delivered']} deliveries, {burst['duplicates']} duplicates, "
                f"{burst['sender']['failed']} not 2xx; other processes <= {others:.0f}% of a core"
            )
            continue
        print(
            f"{label}: burst of {burst['events_accepted']} events -> "
            f"{burst['messages_queued_by_receive']} broker messages queued by receiving, "
            f"{burst['pg_sessions_opened']} new PostgreSQL sessions for {burst['delivered']} "
            f"deliveries, {burst['duplicates']} duplicates; other processes <= {others:.0f}% "
            "of a core"
        )


def print_fanout(cfg: Config, data: dict, summary: dict) -> None:
    print(
        f"\nPart 2 - fan-out  ({data['events']} events x 3 subscribers; the hub: "
        f"{cfg.worker_processes} worker process(es) --pool threads --concurrency "
        f"{cfg.concurrency}; paced at {data['rate']} events/s; burst = backlog drained after the "
        f"worker starts; hang = subscriber c never answers, timeout {cfg.hang_timeout} s; PG "
        "sessions = new PostgreSQL sessions during the burst)"
    )
    print(table(HEADERS, [row(label, run) for label, run in systems(data)]))
    if data["hub"].get("options"):
        from bench import energy_bench

        energy_bench.print_options(data["hub"]["options"], summary["options"])
    print_baselines(data, summary)
    print_experiment(data["hub"])
    print_bursts(data)
