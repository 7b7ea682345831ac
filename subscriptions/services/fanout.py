"""Fan-out: a pending event becomes one Delivery per matching subscription, in one transaction.

The event is `pending` until that transaction commits; a fan-out that never ran is made good
by the sweep. Drains are then requested for the subscriptions that got work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db import connection, transaction
from django.utils import timezone

from receivers.models import Event, EventStatus

from .. import selectors, work
from ..models import Delivery, Subscription
from . import drain


def matching(
    event: Event, subscriptions: list[tuple[Subscription, set[int]]], internal: set[int]
) -> list[int]:
    """The subscriptions that want an event. One with no sources takes every source but the
    hub's own (`internal`): the hub's alerts go only where their source is chosen."""
    return [
        sub.pk
        for sub, source_ids in subscriptions
        if wants_source(source_ids, event.source_id, internal) and sub.matches(event.type)
    ]


def wants_source(source_ids: set[int], source_id: int, internal: set[int]) -> bool:
    if source_ids or source_id in internal:
        return source_id in source_ids
    return True


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def fan_out(event_ids: Iterable[int]) -> int:
    """Create the deliveries of pending events, in one transaction; returns how many."""
    ids = list(event_ids)
    if not ids:
        return 0
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=EventStatus.PENDING)
            .only("pk", "source_id", "type", "is_test")
            .order_by("pk")
        )
        if not events:
            return 0
        subscriptions = selectors.active_subscriptions()
        internal = selectors.internal_source_ids()
        pairs, relayed, ignored, targets = [], [], [], set()
        for event in events:
            sub_ids = [] if event.is_test else matching(event, subscriptions, internal)
            (relayed if sub_ids else ignored).append(event.pk)
            targets.update(sub_ids)
            pairs += [(event.pk, sub_id) for sub_id in sub_ids]
        insert_deliveries(pairs)
        Event.objects.filter(pk__in=relayed).update(status=EventStatus.DISPATCHED)
        Event.objects.filter(pk__in=ignored).update(status=EventStatus.IGNORED)
        transaction.on_commit(lambda: wake(targets))
    return len(pairs)


# Columns a fan-out sets per delivery; every other column takes its field's default.
PER_DELIVERY = ("event", "subscription", "webhook_id")


INSERT_DELIVERIES_SQL = (
    "INSERT INTO {table} ({columns}) SELECT {values} FROM"
    " unnest(%s::bigint[], %s::bigint[], %s::text[]) AS new (event_id, subscription_id, webhook_id)"
    " ON CONFLICT DO NOTHING"
)


def insert_deliveries(pairs: list[tuple[int, int]]) -> None:
    """One Delivery per (event id, subscription id), skipping pairs that already have one.

    On PostgreSQL one statement takes the ids as three arrays, instead of a model instance and
    a dozen prepared values per delivery (bulk_create).
    """
    if not pairs:
        return
    webhook_ids = [new_webhook_id() for _ in pairs]
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [
                Delivery(event_id=event_id, subscription_id=sub_id, webhook_id=webhook_id)
                for (event_id, sub_id), webhook_id in zip(pairs, webhook_ids, strict=True)
            ],
            ignore_conflicts=True,
        )
        return
    quote = connection.ops.quote_name
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns, values, params = [], [], []
    for field in fields:
        columns.append(quote(field.column))
        if field.name in PER_DELIVERY:
            values.append(f"new.{field.column}")
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    statement = INSERT_DELIVERIES_SQL.format(
        table=quote(Delivery._meta.db_table), columns=", ".join(columns), values=", ".join(values)
    )
    event_ids = [event_id for event_id, _ in pairs]
    sub_ids = [sub_id for _, sub_id in pairs]
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, event_ids, sub_ids, webhook_ids])


FAN_OUT_CHUNK = 500


def fan_out_pending() -> int:
    """Fan out every pending event, oldest first, a chunk per transaction."""
    made, previous = 0, None
    while True:
        ids = list(
            Event.objects.filter(status=EventStatus.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)[:FAN_OUT_CHUNK]
        )
        if not ids or ids == previous:
            # None left, or another fan-out holds these rows: it finishes them.
            return made
        made += fan_out(ids)
        if len(ids) < FAN_OUT_CHUNK:
            return made
        previous = ids


def wake(subscription_ids: Iterable[int]) -> None:
    """Request drains for the subscriptions that no drainer holds right now.

    Read after the deliveries were committed, this is race-free: a drainer that still holds
    its lease checks for due deliveries after releasing it, and so sees the new ones. A drain
    waiting for work in this process is told at once.
    """
    ids = set(subscription_ids)
    if not ids:
        return
    drain.new_work.announce(ids)
    busy = set(
        Subscription.objects.filter(pk__in=ids, lease_until__gt=timezone.now()).values_list(
            "pk", flat=True
        )
    )
    work.request_drains(ids - busy)
