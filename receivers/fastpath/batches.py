"""The fast path's writer: one thread per process verifies and stores requests in batches.

The event loop hands over each request whose body it has read; the writer takes every request
waiting, verifies each with the plain view's code, stores the verified events in one INSERT
and one commit (receivers.storage) and only then hands the answers back to the loop, once per
batch. While it writes, the next requests queue up and make the next batch. The database is
only ever used from this thread, so a slow or hung database never holds the event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
)

from ..connections import drop_failed_connections
from ..services import Verified, not_stored, stored, verify
from ..storage import MAX_BATCH, bound_session, insert_rows, row_values
from ..unavailable import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, database_unavailable
from ..views import handle
from .headers import middleware_headers

logger = logging.getLogger(__name__)

SERVER_ERROR = b'{"error": "The hub failed to handle this request."}'


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True, eq=False)
class Job:
    """One request, from the loop to the writer and back."""

    scope: dict
    body: bytes
    slug: str
    rest: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    # Set by the loop when it gave up waiting (and answered 503): not to be stored any more.
    abandoned: bool = False
    secure: bool = False
    answer: Answer | None = None


STOP = object()


class BatchWriter:
    def __init__(self, answer_batch: Callable[[list[Job]], None] | None = None):
        self.answer_batch = answer_batch or answer_jobs
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.pid: int | None = None
        self.lock = threading.Lock()

    def submit(self, job: Job) -> None:
        self.start()
        self.jobs.put(job)

    def waiting(self) -> int:
        return self.jobs.qsize()

    def start(self) -> None:
        # After a fork (a server's worker processes) the parent's thread does not exist here.
        if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
            return
        with self.lock:
            if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
                return
            self.thread = threading.Thread(target=self.run, name="hub-fastpath-writer")
            self.thread.daemon = True
            self.pid = os.getpid()
            self.thread.start()

    def stop(self) -> None:
        """Ends the thread once the requests handed over before are answered."""
        if self.thread is not None and self.thread.is_alive():
            self.jobs.put(STOP)

    def run(self) -> None:
        # Computed here, before the first request, rather than by the first request's batch.
        middleware_headers(False)
        while (batch := self.take()) is not None:
            live = [job for job in batch if not job.abandoned]
            try:
                self.answer_batch(live)
            except Exception as exc:  # noqa: BLE001 - every request must be answered
                for job in live:
                    if job.answer is None:
                        job.answer = failed(exc, job.slug, job.secure)
            deliver(live)
        connections.close_all()

    def take(self) -> list[Job] | None:
        """Every request waiting (at least one, at most MAX_BATCH); None once stopped."""
        first = self.jobs.get()
        if first is STOP:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is STOP:
                self.jobs.put(STOP)
                break
            batch.append(job)
        return batch


def deliver(jobs: list[Job]) -> None:
    """Hand the answers back, with one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = defaultdict(list)
    for job in jobs:
        by_loop[job.loop].append(job)
    for loop, answered in by_loop.items():
        try:
            loop.call_soon_threadsafe(resolve, answered)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for these answers any more


def resolve(jobs: list[Job]) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_result(job.answer)


def answer_jobs(jobs: list[Job]) -> None:
    """Give every job its answer: verify each, store the verified ones together."""
    drop_failed_connections()
    bound_statements()
    verified: list[tuple[Job, Verified, list]] = []
    for job in jobs:
        result = begin(job)
        if not isinstance(result, Verified):
            job.answer = result
            continue
        try:
            verified.append((job, result, row_values(result.event)))
        except Exception as exc:  # noqa: BLE001 - this event alone fails
            job.answer = failed(exc, job.slug, job.secure)
    for start in range(0, len(verified), MAX_BATCH):
        store(verified[start : start + MAX_BATCH])


def begin(job: Job) -> Answer | Verified:
    """The answer, or the verified event to store; Django's request object decodes the path
    and headers and checks the Host header, as for the plain view."""
    request = ASGIRequest(job.scope, io.BytesIO(job.body))
    try:
        job.secure = request.is_secure()
        request.get_host()
        result = handle(request.method, request.META, request.read, job.slug, job.rest, verify)
    except DisallowedHost:
        result = 400, {"error": "Invalid Host header."}, {}
    except Exception as exc:  # noqa: BLE001 - failed() logs it, answers 503 or 500
        return failed(exc, job.slug, job.secure)
    if isinstance(result, Verified):
        return result
    return encoded(*result, secure=job.secure)


def store(items: list[tuple[Job, Verified, list]]) -> None:
    """One statement for all; an integrity error (a source deleted a moment ago) is retried
    event by event so that it fails only its own; a database error fails the batch (503)."""
    events = [verified.event for _, verified, _ in items]
    try:
        ids = write(events, [row for _, _, row in items])
    except IntegrityError as exc:
        if len(items) == 1:
            job, verified, _ = items[0]
            job.answer = finish(job, verified, None, exc)
            return
        for item in items:
            store([item])
        return
    except Exception as exc:  # noqa: BLE001 - nothing of the batch was stored
        for job, _, _ in items:
            job.answer = failed(exc, job.slug, job.secure)
        return
    for (job, verified, _), pk in zip(items, ids, strict=True):
        job.answer = finish(job, verified, pk, None)


def write(events: list, rows: list[list]) -> list[int | None]:
    """A connection the database dropped (a restart, an idle timeout) is reconnected once.
    Repeating the INSERT is safe: rows the first try committed come back as duplicates."""
    try:
        return insert_rows(events, rows)
    except (OperationalError, InterfaceError):
        db = connections[DEFAULT_DB_ALIAS]
        if db.connection is None or not getattr(db.connection, "closed", False):
            raise
        db.close()
        bound_statements()
        return insert_rows(events, rows)


def bound_statements() -> None:
    """storage's bounds for this thread's connection, set once per connection: the loop's own
    bound on the wait (app.ANSWER_SECONDS) covers a database that does not answer at all."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return
    try:
        db.ensure_connection()
        if getattr(db, "hub_bounded", None) is db.connection:
            return
        bound_session(db)
        db.hub_bounded = db.connection
    except (OperationalError, InterfaceError):
        pass  # the database is away: the next INSERT fails and says so


def finish(job: Job, verified: Verified, pk: int | None, error: Exception | None) -> Answer:
    """The answer for a verified event once the database took it, or refused it."""
    try:
        outcome = stored(verified, pk) if error is None else not_stored(verified, error)
    except Exception as exc:  # noqa: BLE001 - failed() logs it, answers 503 or 500
        return failed(exc, verified.slug, job.secure)
    return encoded(outcome.status, outcome.body, {}, secure=job.secure)


def failed(exc: BaseException, slug: str, secure: bool) -> Answer:
    if database_unavailable(exc):
        return unavailable(secure)
    logger.error("receive failed for source %s", slug, exc_info=exc)
    return Answer(500, json_headers(len(SERVER_ERROR), secure), SERVER_ERROR)


def unavailable(secure: bool) -> Answer:
    extra = [(name.lower().encode(), value.encode()) for name, value in UNAVAILABLE_HEADERS]
    return Answer(503, json_headers(len(UNAVAILABLE_BODY), secure) + extra, UNAVAILABLE_BODY)


def encoded(status: int, body: dict | None, extra: dict, secure: bool) -> Answer:
    if body is None:
        headers = [(b"content-length", b"0"), *middleware_headers(secure)]
        content = b""
    else:
        content = json.dumps(body).encode()
        headers = json_headers(len(content), secure)
    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in extra.items()]
    return Answer(status, headers, content)


def json_headers(length: int, secure: bool) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        *middleware_headers(secure),
    ]
