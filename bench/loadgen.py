"""A small open-loop HTTP/1.1 load generator: constant rate (or as fast as possible).

Run as its own process so its CPU can be measured apart from the servers':

    python bench/loadgen.py --port 8000 --path /hooks/x/ --pool pool.txt --count 5000 --rate 500

Requests are scheduled at t0 + i/rate whatever the server does; a request that has to wait
for a free connection waits on the clock, so latency is measured from the *scheduled* time
(no coordinated omission, as wrk2 does). Connections are keep-alive where the server allows.
It prints nothing but writes a JSON summary (and, with --record, each event's answer time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def load_requests(args) -> tuple[list[bytes], list[str]]:
    lines = Path(args.pool).read_text().splitlines()[args.start : args.start + args.count]
    if len(lines) < args.count:
        raise SystemExit(f"the pool has only {len(lines)} events from {args.start}")
    requests, ids = [], []
    for line in lines:
        digest, _, body = line.partition("\t")
        data = body.encode()
        head = (
            f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"Content-Type: application/json\r\nX-Signature: sha512={digest}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        requests.append(head + data)
        ids.append(json.loads(body)["id"])
    return requests, ids


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = 0, False, head.startswith(b"HTTP/1.0")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def run(args) -> dict:
    requests, ids = load_requests(args)
    count = len(requests)
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    by_second: dict[int, list[float]] = {}
    service: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    answered: list = [None] * count
    wall0, perf0 = time.time(), time.perf_counter()
    max_lag = 0.0

    async def worker() -> None:
        reader = writer = None
        while True:
            job = await queue.get()
            if job is None:
                break
            index, scheduled = job
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(args.host, args.port)
                sent = time.perf_counter()
                writer.write(requests[index])
                status, close = await asyncio.wait_for(read_response(reader), args.timeout)
                done = time.perf_counter()
                latencies.append(done - scheduled)
                by_second.setdefault(int(scheduled - start), []).append(done - scheduled)
                service.append(done - sent)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                answered[index] = [ids[index], wall0 + (done - perf0), status]
                if close:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                name = exc.__class__.__name__
                errors[name] = errors.get(name, 0) + 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    cpu0 = time.process_time()
    start = time.perf_counter() + 0.05
    for index in range(count):
        if args.rate > 0:
            scheduled = start + index / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
        else:
            scheduled = time.perf_counter()
        queue.put_nowait((index, scheduled))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    latencies.sort()
    service.sort()
    ms = 1000.0
    summary = {
        "requests": count,
        "answered": len(latencies),
        "statuses": statuses,
        "errors": errors,
        "rate_target": args.rate,
        "rate_achieved": len(latencies) / wall if wall > 0 else 0.0,
        "wall_seconds": wall,
        "p50_ms": percentile(latencies, 50) * ms,
        "p90_ms": percentile(latencies, 90) * ms,
        "p99_ms": percentile(latencies, 99) * ms,
        "max_ms": (latencies[-1] if latencies else 0.0) * ms,
        # Where in the run the slow answers were: a burst at the start, or spread out.
        "p99_by_second_ms": [
            percentile(sorted(by_second[second]), 99) * ms for second in sorted(by_second)
        ],
        "service_p50_ms": percentile(service, 50) * ms,
        "service_p99_ms": percentile(service, 99) * ms,
        "dispatch_max_lag_ms": max_lag * ms,
        "loadgen_cpu_seconds": cpu,
        "loadgen_cpu_pct": 100.0 * cpu / wall if wall > 0 else 0.0,
        "first_sent_wall": wall0 + (start - perf0),
    }
    if args.record:
        summary["answers"] = [a for a in answered if a is not None]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--start", type=int, default=0, help="first pool line to send")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 = no limit")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--record", action="store_true", help="keep each event's answer time")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("the load generator only talks to loopback addresses")
    summary = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
