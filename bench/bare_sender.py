"""The relay's physical anchor (issue 15): the hub's deliveries sent with nothing else.

One process per core; each sends its share of the deliveries, one after the other, over one
kept-alive `http.client.HTTPConnection` to the subscriber (bench/target.py), as a hub worker
thread does. Each request is the one the hub sends: the event's original bytes, the hub's
content-type, user-agent, x-hub-event-type and x-hub-source headers, and Standard Webhooks
signature headers computed per delivery by the hub's own code (subscriptions/signing.py), a
new webhook-id each time. No database, no broker, no retries, no records of attempts.

    python bench/bare_sender.py --pool FILE --start N --count N --url A --url B --url C

Event i goes to every URL in turn, from process i % processes. The processes connect first and
start sending together. Prints one JSON object: requests sent, answers that were not 2xx, and
each process's CPU seconds and seconds spent sending.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

# Run as a script, bench/ itself would be first on the path and shadow the standard library.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from subscriptions.signing import signature_headers  # noqa: E402

SOURCE_SLUG = "gridx-bench"
USER_AGENT = "hub-webhooks/1.0"  # subscriptions/payloads.py


def deliveries(pool: Path, start: int, count: int, urls: list[str]) -> list[tuple]:
    """(path, body, event type, secret) per delivery, event by event; each URL its own secret,
    as each subscription has."""
    lines = pool.read_text().splitlines()[start : start + count]
    targets = [(urlsplit(url).path, f"whsec_bench-bare-sender-{n}") for n, url in enumerate(urls)]
    out = []
    for line in lines:
        body = line.partition("\t")[2].encode()
        event_type = json.loads(body)["type"]
        out.extend((path, body, event_type, secret) for path, secret in targets)
    return out


def send(host: str, port: int, share: list[tuple], barrier, results) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    barrier.wait()
    started, cpu = time.monotonic(), time.process_time()
    failed = 0
    for path, body, event_type, secret in share:
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-hub-event-type": event_type,
            "x-hub-source": SOURCE_SLUG,
        }
        msg_id = f"msg_{uuid.uuid4().hex}"
        headers.update(signature_headers([secret], msg_id, int(time.time()), body))
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            failed += 1
    connection.close()
    results.put(
        {
            "sent": len(share),
            "failed": failed,
            "seconds": time.monotonic() - started,
            "cpu_seconds": time.process_time() - cpu,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", action="append", required=True, help="a subscriber's URL")
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    args = parser.parse_args()
    work = deliveries(args.pool, args.start, args.count, args.url)
    address = urlsplit(args.url[0])
    per_event = len(args.url)
    shares: list[list[tuple]] = [[] for _ in range(args.processes)]
    for n in range(len(work) // per_event):
        shares[n % args.processes].extend(work[n * per_event : (n + 1) * per_event])
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(args.processes), context.Queue()
    workers = [
        context.Process(target=send, args=(address.hostname, address.port, share, barrier, results))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    done = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    print(
        json.dumps(
            {
                "processes": args.processes,
                "sent": sum(d["sent"] for d in done),
                "failed": sum(d["failed"] for d in done),
                "per_process": done,
            }
        )
    )


if __name__ == "__main__":
    main()
