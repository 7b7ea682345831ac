"""Storing events: concurrent receives share one INSERT and one commit.

Every received event must be committed before it is acknowledged, and on a busy hub a commit
per request cost more than everything else the request did (PostgreSQL's per-statement and
per-commit work, and a database round trip in the web process). So the request threads of a
process take turns as the writer: the first to arrive writes what is queued, including its own
event, in one `INSERT … ON CONFLICT DO NOTHING RETURNING`; those arriving meanwhile queue up
and the next of them writes them all. A writer waits (at most GATHER_SECONDS) only for
requests of its own process that are already on their way; alone, it writes at once. Each
request still returns only after its own row is durable.
"""

from __future__ import annotations

import copy
import functools
import json
import operator
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import F, JSONField

from .models import Event

# Bounds one statement's size (and the wait of the requests queued behind it).
MAX_BATCH = 200
# How long a writer waits for requests of this process that are still being verified. It
# waits only while there are some: a request alone is written at once.
GATHER_SECONDS = 0.002

INSERT_SQL = (
    "INSERT INTO {table} ({columns}) VALUES {rows}"
    " ON CONFLICT DO NOTHING RETURNING {pk}, {source}, {external_id}"
)


@dataclass(slots=True, eq=False)
class NewEvent:
    """An Event row on its way in, without a model instance: building one, and its values
    through the model's fields, cost more than the rest of the request's Python. The writer
    also takes Event instances (tests, scripts): it reads the same attributes."""

    source_id: int
    external_id: str
    type: str
    occurred_at: datetime | None
    received_at: datetime
    headers: dict[str, str]
    raw_body: bytes
    payload: Any
    is_test: bool
    status: str
    duplicates: int = 0


def insert_fields() -> list:
    return [f for f in Event._meta.concrete_fields if not f.primary_key]


@functools.cache
def insert_statement(rows: int) -> tuple[str, list]:
    fields = insert_fields()
    quote = connection.ops.quote_name
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    statement = INSERT_SQL.format(
        table=quote(Event._meta.db_table),
        columns=", ".join(quote(f.column) for f in fields),
        rows=", ".join([one_row] * rows),
        pk=quote(Event._meta.pk.column),
        source=quote(Event._meta.get_field("source").column),
        external_id=quote(Event._meta.get_field("external_id").column),
    )
    return statement, fields


def insert_events(events: Sequence[NewEvent | Event]) -> list[int | None]:
    """Insert in one statement; per event its new id, or None when it was already stored.

    The unique (source, external_id) constraint decides between duplicates, within the batch
    and against rows stored before; any other integrity error raises for the whole batch, so
    nothing unstored is ever acknowledged. Runs in autocommit: when this returns, it is durable.
    """
    # The connection itself, not the `connection` proxy: every attribute read through the
    # proxy is a thread-local lookup, and preparing the values reads dozens of them.
    db = connections[DEFAULT_DB_ALIAS]
    statement, fields = insert_statement(len(events))
    if db.vendor == "postgresql":
        params = [value for e in events for value in postgresql_values(e)]
    else:
        params = [f.get_db_prep_save(getattr(e, f.attname), db) for e in events for f in fields]
    rows = execute_prepared(db, statement, params)
    inserted = {(source_id, external_id): pk for pk, source_id, external_id in rows}
    ids: list[int | None] = []
    for event in events:
        # The first of two identical events in one batch takes the id, the second is a duplicate.
        ids.append(inserted.pop((event.source_id, event.external_id), None))
    duplicates = [event for event, pk in zip(events, ids, strict=True) if pk is None]
    for event in duplicates:
        Event.objects.filter(source_id=event.source_id, external_id=event.external_id).update(
            duplicates=F("duplicates") + 1
        )
    return ids


def json_text(value: Any) -> str | None:
    # What JSONField stores: None is SQL NULL. A str parameter reaches PostgreSQL untyped and
    # is read as the column's jsonb.
    return None if value is None else json.dumps(value)


@functools.cache
def postgresql_columns() -> tuple[Callable[[Any], tuple], tuple[int, ...]]:
    """Reads an event's column values in one call, and says which of them are JSON.

    psycopg adapts str, bytes, bool, int and aware datetimes itself, just as Django's fields
    would hand them over; only the JSON columns need encoding."""
    fields = insert_fields()
    json_columns = tuple(i for i, f in enumerate(fields) if isinstance(f, JSONField))
    return operator.attrgetter(*(f.attname for f in fields)), json_columns


def postgresql_values(event: Any) -> list:
    read, json_columns = postgresql_columns()
    values = list(read(event))
    for i in json_columns:
        values[i] = json_text(values[i])
    return values


def execute_prepared(db, statement: str, params: list) -> list[tuple]:
    """On PostgreSQL, a prepared statement with server-side parameters.

    Django's psycopg cursors bind parameters in Python and send a new statement each time;
    for this one statement, run for every request, that cost more CPU in the web process
    and in PostgreSQL than anything else the request does. There is no health check query
    either: insert_with_reconnect handles a dropped connection.
    """
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()
    import psycopg

    with db.wrap_database_errors:
        db.ensure_connection()
        with psycopg.Cursor(db.connection) as cursor:
            cursor.execute(statement, params, prepare=True)
            return cursor.fetchall()


def insert_with_reconnect(events: Sequence[NewEvent | Event]) -> list[int | None]:
    """A persistent connection that PostgreSQL dropped (a restart, an idle timeout) is
    reconnected once. Repeating the INSERT is safe: rows the first try did commit come back
    as duplicates (counted once more), which are acknowledged like new ones."""
    if connection.in_atomic_block:
        # Inside a caller's transaction (tests, scripts): a savepoint keeps it usable after
        # an error, and there is no reconnecting.
        with transaction.atomic():
            return insert_events(events)
    try:
        return insert_events(events)
    except (OperationalError, InterfaceError):
        connection.close()
        return insert_events(events)


def copied(exc: BaseException) -> BaseException:
    """A copy to raise in another thread; the original when it cannot be copied."""
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - any exception will do, it must reach every request
        return exc


@dataclass(eq=False)
class Arrival:
    arrived: bool = False


@dataclass(eq=False)
class Pending:
    event: NewEvent | Event
    done: bool = False
    pk: int | None = None
    error: BaseException | None = None
    # Set when the event was written (done) or when this request is to write next (lead).
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False


class GroupCommit:
    """Leader/follower group commit within one process (see the module docstring).

    A request announces itself with `expecting()` as soon as it arrives. The writer waits,
    up to GATHER_SECONDS, for the announced requests to queue their events, so that the
    requests a busy process handles at the same time share one commit (a commit per row
    cost PostgreSQL three times the CPU of a commit of four).
    """

    def __init__(
        self,
        write=insert_with_reconnect,
        max_batch: int = MAX_BATCH,
        gather_seconds: float = GATHER_SECONDS,
    ):
        self.write = write
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.condition = threading.Condition()
        self.queue: list[Pending] = []
        self.writing = False
        self.gathering = False
        self.coming = 0
        self.last_size = 0

    @contextmanager
    def expecting(self) -> Iterator[Arrival]:
        """Count a request as on its way to store() until it gets there or gives up."""
        arrival = Arrival()
        with self.condition:
            self.coming += 1
        try:
            yield arrival
        finally:
            if not arrival.arrived:
                with self.condition:
                    self.coming -= 1
                    self.wake_gatherer()

    def store(self, event: NewEvent | Event, arrival: Arrival | None = None) -> int | None:
        """The new event's id, or None for a duplicate; raises what the database raised.

        Each waiting request is woken once, by its own Event, when its row is written or when
        it is its turn to write; the condition only wakes a writer that gathers."""
        mine = Pending(event)
        with self.condition:
            if arrival is not None and not arrival.arrived:
                arrival.arrived = True
                self.coming -= 1
            self.queue.append(mine)
            if self.writing:
                self.wake_gatherer()
            else:
                self.writing = mine.lead = True
        while not mine.done:
            if not mine.lead:
                mine.wake.wait()
                mine.wake.clear()
                continue
            with self.condition:
                self.gather()
                batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
            try:
                self.write_batch(batch)
            finally:
                mine.lead = False
                with self.condition:
                    if self.queue:
                        # The next writer is the oldest request still waiting.
                        successor = self.queue[0]
                        successor.lead = True
                        successor.wake.set()
                    else:
                        self.writing = False
        if mine.error is not None:
            raise mine.error
        return mine.pk

    def gather(self) -> None:
        """Called with the condition held: wait for announced requests, within the bound.

        Also waits (within the bound) until the batch is as large as the last one: under a
        steady load the same requests come back as soon as they have their answers."""
        deadline = time.monotonic() + self.gather_seconds
        self.gathering = True
        try:
            while not self.gathered():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.condition.wait(remaining)
        finally:
            self.gathering = False
        self.last_size = len(self.queue)

    def gathered(self) -> bool:
        queued = len(self.queue)
        return queued >= self.max_batch or (self.coming == 0 and queued >= self.last_size)

    def wake_gatherer(self) -> None:
        """Called with the condition held. Only once the batch is complete: waking the writer
        for each request that queues cost a context switch each, on a machine where those
        cost more than the rest of the request's Python."""
        if self.gathering and self.gathered():
            self.condition.notify()

    def write_batch(self, batch: list[Pending]) -> None:
        try:
            try:
                ids = self.write([item.event for item in batch])
            except IntegrityError:
                if len(batch) == 1:
                    raise
                # One bad event (its source was deleted a moment ago) must not fail the others.
                for item in batch:
                    self.write_batch([item])
                return
            for item, pk in zip(batch, ids, strict=True):
                item.pk = pk
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            # Every waiting request fails with the database's error (a 503), none is told
            # its event was stored. Each gets its own copy: they are raised in other threads.
            for item in batch:
                item.error = copied(exc)
        finally:
            for item in batch:
                item.done = True
                item.wake.set()


writer = GroupCommit()
