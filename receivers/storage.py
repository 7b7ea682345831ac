"""Storing events: any number of them in one `INSERT … ON CONFLICT DO NOTHING RETURNING`.

Every received event must be committed before it is acknowledged, and on a busy hub a commit
per request cost more than everything else the request did. The fast path
(receivers/fastpath/) gathers the events verified together and stores them with one statement
and one commit; the plain view stores its one event with the same statement.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import F, JSONField

from .models import Event

# Bounds one statement's size (and the wait of the requests queued behind it).
MAX_BATCH = 200
# PostgreSQL ends a receive-path statement that runs or waits for a lock longer than this, so
# that the answer is a 503 within gridX's 5 s (a database that does not answer at all is the
# caller's to bound: receivers.fastpath waits 4.5 s; connect_timeout is 5 s).
STATEMENT_TIMEOUT = "3s"
LOCK_TIMEOUT = "2s"
BOUNDS_SQL = (
    "SELECT set_config('statement_timeout', %s, {local}), set_config('lock_timeout', %s, {local})"
)

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
def insert_statement(rows: int, vendor: str) -> str:
    fields = insert_fields()
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return INSERT_SQL.format(
        table=quote(Event._meta.db_table),
        columns=", ".join(quote(f.column) for f in fields),
        rows=", ".join([one_row] * rows),
        pk=quote(Event._meta.pk.column),
        source=quote(Event._meta.get_field("source").column),
        external_id=quote(Event._meta.get_field("external_id").column),
    )


def row_values(event: NewEvent | Event) -> list:
    """One event's column values, ready for the statement. Raises for an event that cannot
    be encoded (that event alone fails: the others of its batch are stored)."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql":
        return postgresql_values(event)
    return [f.get_db_prep_save(getattr(event, f.attname), db) for f in insert_fields()]


def insert_events(events: Sequence[NewEvent | Event]) -> list[int | None]:
    """Insert in one statement; per event its new id, or None when it was already stored."""
    return insert_rows(events, [row_values(event) for event in events])


def insert_rows(events: Sequence[NewEvent | Event], rows: Sequence[list]) -> list[int | None]:
    """Insert the events, whose values row_values() gave, in one statement through Django's
    cursor; per event its new id, or None when it was already stored.

    The unique (source, external_id) constraint decides between duplicates, within the batch
    and against rows stored before; any other integrity error raises for the whole batch, so
    nothing unstored is ever acknowledged. In autocommit, once this returns it is durable.
    """
    db = connections[DEFAULT_DB_ALIAS]
    statement = insert_statement(len(rows), db.vendor)
    with insert_cursor(db) as cursor:
        cursor.execute(statement, [value for row in rows for value in row])
        returned = cursor.fetchall()
    inserted = {(source_id, external_id): pk for pk, source_id, external_id in returned}
    ids: list[int | None] = []
    for event in events:
        # The first of two identical events in one batch takes the id, the second is a duplicate.
        ids.append(inserted.pop((event.source_id, event.external_id), None))
    for event, pk in zip(events, ids, strict=True):
        if pk is None:
            Event.objects.filter(source_id=event.source_id, external_id=event.external_id).update(
                duplicates=F("duplicates") + 1
            )
    return ids


def bound_session(db) -> None:
    """The bounds, for every later statement of this connection (the fast path's writer)."""
    with db.cursor() as cursor:
        cursor.execute(BOUNDS_SQL.format(local="false"), [STATEMENT_TIMEOUT, LOCK_TIMEOUT])


@contextmanager
def bounded_transaction() -> Iterator[None]:
    """A transaction whose statements have the bounds (the plain view, one request)."""
    db = connections[DEFAULT_DB_ALIAS]
    with transaction.atomic():
        if db.vendor == "postgresql":
            with db.cursor() as cursor:
                cursor.execute(BOUNDS_SQL.format(local="true"), [STATEMENT_TIMEOUT, LOCK_TIMEOUT])
        yield


def insert_cursor(db):
    """Django's cursor wrapper (execute_wrapper and query logging see the INSERT) around a
    psycopg cursor that binds parameters on the server, so that psycopg prepares the statement
    after a few uses: Django's own psycopg cursor binds them in the client, a new statement
    text per batch, which cost PostgreSQL about 4x the time and the web process 1.8x the CPU
    per event (bench/README.md, "Writing through Django's cursor")."""
    if db.vendor != "postgresql":
        return db.cursor()
    import psycopg

    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = psycopg.Cursor(db.connection)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)


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
