"""The fault suite's parts (a support module, no tests): a hub on private services, a steady
stream of signed events through its web server, and a subscriber that notes when each event
arrived. tests/reliability/test_faults.py injects the faults and measures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from receivers.models import Event
from receivers.providers import get_provider
from receivers.tests.webhooks import gridx_body
from subscriptions.tests.receiver import Answer, Received, TestReceiver

from .processes import ROOT, HubProcesses, Postgres, Redis

# gridX wants an answer within 5 seconds; a request not answered by then is not acknowledged.
ANSWER_SECONDS = 5.0
SUBSCRIPTION_TIMEOUT = 5
LEASE_MARGIN = 5

MAKE_SOURCE_AND_SUBSCRIPTION = """
import json
from receivers.tests.factories import make_source
from subscriptions.tests.factories import SubscriptionFactory
source, (secret,) = make_source("gridx")
SubscriptionFactory(url={url!r}, timeout_seconds={timeout})
print(json.dumps({{"slug": source.slug, "secret": secret, "source_id": source.pk}}))
"""


class Subscriber:
    """The fake subscriber: answers 500 to the first try of about one event in ten (so that
    every fault also needs retries), 200 to everything else, and notes when each event was
    first answered 200."""

    def __init__(self) -> None:
        self.receiver = TestReceiver()
        self.receiver.script = self.answer
        self.lock = threading.Lock()
        self.delivered: dict[str, float] = {}
        self.failed_first: set[str] = set()

    def answer(self, request: Received) -> Answer | None:
        event_id = json.loads(request.body)["id"]
        with self.lock:
            if int(event_id[:8], 16) % 10 == 0 and event_id not in self.failed_first:
                self.failed_first.add(event_id)
                return Answer(status=500, body=b"try again")
            self.delivered.setdefault(event_id, request.at)
        return None

    @property
    def url(self) -> str:
        return self.receiver.url


@dataclass
class Sent:
    at: float
    status: int | None = None  # None: no answer within ANSWER_SECONDS, or no connection


class Stream:
    """`rate` signed gridX events a second through the web server, each request on a thread
    of its own so that a hung server does not slow the stream down."""

    def __init__(self, url: str, secret: str, rate: float = 10.0):
        self.url, self.secret, self.rate = url, secret, rate
        self.sent: dict[str, Sent] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.client = httpx.Client(timeout=ANSWER_SECONDS, limits=httpx.Limits(max_connections=100))
        self.pool = ThreadPoolExecutor(max_workers=100)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopping.is_set():
            self.pool.submit(self.send_one)
            next_at += 1 / self.rate
            self.stopping.wait(max(0.0, next_at - time.monotonic()))

    def send_one(self) -> None:
        event_id = str(uuid.uuid4())
        body = gridx_body(id=event_id)
        signed = get_provider("gridx").sign(body, self.secret, None, None)
        headers = {**signed.headers, "content-type": "application/json"}
        sent = Sent(at=time.time())
        with self.lock:
            self.sent[event_id] = sent
        try:
            answer = self.client.post(self.url, content=body, headers=headers)
            sent.status = answer.status_code
        except httpx.HTTPError:
            pass

    def stop(self) -> None:
        """Send no more, and wait for the answers (or timeouts) of what was sent."""
        self.stopping.set()
        self.thread.join()
        self.pool.shutdown(wait=True)
        self.client.close()

    def acknowledged(self) -> set[str]:
        with self.lock:
            return {i for i, s in self.sent.items() if s.status is not None and s.status < 300}


class Stack:
    """One hub on its own PostgreSQL cluster and Redis: gunicorn, a worker and beat, as
    docker-compose.yml runs them (sweep every second, lease margin LEASE_MARGIN)."""

    def __init__(self, logs: Path, subscriber: Subscriber):
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.subscriber = subscriber
        self.postgres = Postgres(logs)
        self.redis = Redis(logs)
        self.hub = HubProcesses(
            self.redis,
            logs,
            {"DATABASE_URL": self.postgres.url, "HUB_LEASE_MARGIN_SECONDS": str(LEASE_MARGIN)},
        )
        self.beat: subprocess.Popen | None = None
        self.slug = self.secret = ""
        self.source_id = 0

    def start(self) -> None:
        self.postgres.create()
        self.redis.start()
        self.manage("migrate", "--no-input")
        script = MAKE_SOURCE_AND_SUBSCRIPTION.format(
            url=self.subscriber.url, timeout=SUBSCRIPTION_TIMEOUT
        )
        made = json.loads(self.manage("shell", "-c", script).splitlines()[-1])
        self.slug, self.secret, self.source_id = made["slug"], made["secret"], made["source_id"]
        self.hub.start_web()
        self.hub.start_worker(beat=False)
        self.beat = self.hub.start_beat()
        self.hub.wait_ready()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args, "-v", "0"],
            cwd=ROOT,
            env=self.hub.env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stream(self) -> Stream:
        return Stream(f"{self.hub.receive_url}/{self.slug}/", self.secret)

    def stored(self, event_ids: set[str]) -> set[str]:
        """Which of these events the hub's database holds."""
        table = Event._meta.db_table
        with psycopg.connect(self.postgres.url, connect_timeout=10) as db:
            rows = db.execute(
                f"SELECT external_id FROM {table} WHERE source_id = %s"  # noqa: S608
                " AND external_id = ANY(%s)",
                [self.source_id, list(event_ids)],
            ).fetchall()
        return {row[0] for row in rows}

    def readiness(self) -> dict:
        answer = httpx.get(f"http://127.0.0.1:{self.hub.web_port}/readyz", timeout=10)
        return answer.json()

    def stop(self) -> None:
        self.hub.stop()
        self.redis.stop()
        self.postgres.destroy()
