"""Claiming a batch of deliveries and reading what sending them needs, in one statement.

On PostgreSQL the conditional UPDATE that claims (drain.claim_due) returns the claimed rows
joined with their event and source: `UPDATE … FROM … RETURNING`, through Django's cursor.
The rows become model instances without a queryset (Model.from_db, as Django's own iterator
does it): the separate SELECT with select_related cost about as much Python per delivery as
everything else in a claim (bench/README.md, "Relay: where a delivery's time goes").
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db import connection
from django.db.models import Model, QuerySet

from receivers.models import Event, Source
from receivers.storage import insert_cursor

from ..models import OPEN_STATUSES, Delivery, DeliveryStatus, PayloadFormat, Subscription
from .outcomes import DELIVERY_FIELDS

# Only what sending needs: no admin fields, the parsed payload only for CloudEvents.
# received_at is also what the receive-to-delivered latency is measured from.
CLAIMED_FIELDS = ("webhook_id", "event_id", "subscription_id", "order_key", "expires_at")
EVENT_FIELDS = ("raw_body", "headers", "type", "received_at", "source_id")
CLOUDEVENT_FIELDS = ("payload", "external_id", "occurred_at")

CLAIM_SQL = (
    "UPDATE {delivery} AS d SET {status} = %s, {claimed_until} = %s"
    " FROM {event} AS e JOIN {source} AS s ON s.{source_pk} = e.{event_source}"
    " WHERE d.{pk} IN ({due}) AND d.{status} IN ({open}) AND e.{event_pk} = d.{delivery_event}"
    " RETURNING {columns}"
)


class Columns:
    """Some fields of a model, in the model's order, read by a raw statement."""

    def __init__(self, model: type[Model], names: tuple[str, ...], alias: str) -> None:
        wanted = {"id", *names}
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if f.attname in wanted]
        self.attnames = [f.attname for f in self.fields]
        quote = connection.ops.quote_name
        self.sql = [f"{alias}.{quote(f.column)}" for f in self.fields]
        # As the ORM reads them: JSON is decoded by the field, not by psycopg.
        self.converted = [(i, f) for i, f in enumerate(self.fields) if hasattr(f, "from_db_value")]

    def instance(self, values: tuple) -> Model:
        values = list(values)
        for index, field in self.converted:
            values[index] = field.from_db_value(values[index], None, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


@functools.cache
def columns_for(payload_format: str) -> tuple[Columns, Columns, Columns]:
    event_fields = EVENT_FIELDS
    if payload_format == PayloadFormat.CLOUDEVENTS:
        event_fields += CLOUDEVENT_FIELDS
    return (
        Columns(Delivery, (*DELIVERY_FIELDS, *CLAIMED_FIELDS), "d"),
        Columns(Event, event_fields, "e"),
        Columns(Source, ("slug",), "s"),
    )


def claim_statement(due: QuerySet, columns: tuple[Columns, ...]) -> tuple[str, list]:
    quote = connection.ops.quote_name
    due_sql, due_params = due.query.sql_with_params()
    column = lambda model, name: quote(model._meta.get_field(name).column)  # noqa: E731
    sql = CLAIM_SQL.format(
        delivery=quote(Delivery._meta.db_table),
        event=quote(Event._meta.db_table),
        source=quote(Source._meta.db_table),
        status=column(Delivery, "status"),
        claimed_until=column(Delivery, "claimed_until"),
        pk=column(Delivery, "id"),
        delivery_event=column(Delivery, "event"),
        event_pk=column(Event, "id"),
        event_source=column(Event, "source"),
        source_pk=column(Source, "id"),
        due=due_sql,
        open=", ".join(["%s"] * len(OPEN_STATUSES)),
        columns=", ".join(sql for c in columns for sql in c.sql),
    )
    return sql, [*due_params, *OPEN_STATUSES]


def claim_and_read(sub: Subscription, due: QuerySet, lease: datetime) -> list[Delivery]:
    """Claim the deliveries `due` selects (primary keys) that are still open, with `lease`;
    returns them with their event and the event's source, in no particular order."""
    columns = columns_for(sub.payload_format)
    sql, params = claim_statement(due, columns)
    # Bound on the server: a subscription's claim is one text, prepared after a few uses.
    with insert_cursor(connection) as cursor:
        cursor.execute(sql, [DeliveryStatus.SENDING, lease, *params])
        rows = cursor.fetchall()
    deliveries, events, sources = columns
    split = (len(deliveries.fields), len(deliveries.fields) + len(events.fields))
    claimed = []
    for row in rows:
        delivery = deliveries.instance(row[: split[0]])
        event = events.instance(row[split[0] : split[1]])
        event.source = sources.instance(row[split[1] :])
        delivery.event = event
        claimed.append(delivery)
    return claimed
