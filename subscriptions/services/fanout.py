"""Fan-out: a pending event becomes one Delivery per matching subscription, in one transaction.

The event is `pending` until that transaction commits; a fan-out that never ran is made good
by the sweep. Drains are then requested for the subscriptions that got work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import asdict

from django.db import connection, transaction
from django.utils import timezone

from receivers.models import Event, EventStatus

from .. import options, selectors, work
from ..models import OPEN_STATUSES, Delivery, Subscription
from ..options import Plan, Stamp
from . import drain

logger = logging.getLogger(__name__)

# Stands in for a subscription whose stored options no longer parse: it gets nothing.
REFUSE_ALL = Plan(
    rules=[], order_path=None, coalesce=[], expire_after=None, expire_after_by_type={}, refuse=True
)


def plans_of(subscriptions: list[tuple[Subscription, set[int]]]) -> dict[int, Plan]:
    """The options of the subscriptions that have any (a plain subscription has no plan)."""
    plans = {}
    for sub, _sources in subscriptions:
        try:
            plan = options.plan_of(sub)
        except ValueError as exc:
            logger.error(
                "subscription %s has invalid options, it receives nothing: %s",
                sub.pk,
                exc,
                extra={"subscription": sub.pk},
            )
            plan = REFUSE_ALL
        if plan is not None:
            plans[sub.pk] = plan
    return plans


def matching(
    event: Event,
    subscriptions: list[tuple[Subscription, set[int]]],
    internal: set[int],
    plans: dict[int, Plan] | None = None,
) -> list[int]:
    """The subscriptions an event goes to: by source, type and, where set, payload filter. One
    with no sources takes every source but the hub's own (`internal`): the hub's alerts go only
    where their source is chosen."""
    if plans is None:
        plans = plans_of(subscriptions)
    return [
        sub.pk
        for sub, source_ids in subscriptions
        if wants_source(source_ids, event.source_id, internal)
        and sub.matches(event.type)
        and (sub.pk not in plans or plans[sub.pk].admits(event))
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
        subscriptions = selectors.active_subscriptions()
        plans = plans_of(subscriptions)
        fields = ["pk", "source_id", "type", "is_test", *options.event_fields(list(plans.values()))]
        events = list(
            Event.objects.select_for_update(skip_locked=True)
            .filter(pk__in=ids, status=EventStatus.PENDING)
            .only(*fields)
            .order_by("pk")
        )
        if not events:
            return 0
        internal = selectors.internal_source_ids()
        pairs, stamps, relayed, ignored, targets = [], {}, [], [], set()
        for event in events:
            sub_ids = [] if event.is_test else matching(event, subscriptions, internal, plans)
            (relayed if sub_ids else ignored).append(event.pk)
            targets.update(sub_ids)
            pairs += [(event.pk, sub_id) for sub_id in sub_ids]
            for sub_id in sub_ids:
                if sub_id in plans and plans[sub_id].stamps:
                    stamps[event.pk, sub_id] = plans[sub_id].stamp(event)
        insert_deliveries(pairs, stamps)
        Event.objects.filter(pk__in=relayed).update(status=EventStatus.DISPATCHED)
        Event.objects.filter(pk__in=ignored).update(status=EventStatus.IGNORED)
        transaction.on_commit(lambda: wake(targets))
    return len(pairs)


# Columns a fan-out sets per delivery, with their PostgreSQL array types; every other column
# takes its field's default. The stamped ones only when a subscription has options.
PER_DELIVERY = {"event": "bigint", "subscription": "bigint", "webhook_id": "text"}
STAMPED = {"order_key": "text", "coalesce_key": "text", "expires_at": "timestamptz"}

INSERT_DELIVERIES_SQL = (
    "INSERT INTO {table} ({columns}) SELECT {values} FROM unnest({arrays}) AS new ({names})"
    " ON CONFLICT DO NOTHING"
)


def insert_deliveries(
    pairs: list[tuple[int, int]], stamps: dict[tuple[int, int], Stamp] | None = None
) -> None:
    """One Delivery per (event id, subscription id), skipping pairs that already have one.

    On PostgreSQL one statement takes the values as arrays, instead of a model instance and
    a dozen prepared values per delivery (bulk_create). `stamps` holds the options' keys of
    the pairs that have any.
    """
    if not pairs:
        return
    stamps = stamps or {}
    webhook_ids = [new_webhook_id() for _ in pairs]
    if connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [
                Delivery(
                    event_id=event_id,
                    subscription_id=sub_id,
                    webhook_id=webhook_id,
                    **asdict(stamps.get((event_id, sub_id), Stamp())),
                )
                for (event_id, sub_id), webhook_id in zip(pairs, webhook_ids, strict=True)
            ],
            ignore_conflicts=True,
        )
        return
    per_delivery = {**PER_DELIVERY, **(STAMPED if stamps else {})}
    arrays = [[e for e, _ in pairs], [s for _, s in pairs], webhook_ids]
    if stamps:
        rows = [stamps.get(pair, Stamp()) for pair in pairs]
        arrays += [[getattr(row, name) for row in rows] for name in STAMPED]
    statement, params = insert_statement(per_delivery)
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, *arrays])


def insert_statement(per_delivery: dict[str, str]) -> tuple[str, list]:
    quote = connection.ops.quote_name
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns, values, params = [], [], []
    for field in fields:
        columns.append(quote(field.column))
        if field.name in per_delivery:
            values.append(f"new.{field.column}")
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
    names = [Delivery._meta.get_field(name).column for name in per_delivery]
    statement = INSERT_DELIVERIES_SQL.format(
        table=quote(Delivery._meta.db_table),
        columns=", ".join(columns),
        values=", ".join(values),
        arrays=", ".join(f"%s::{kind}[]" for kind in per_delivery.values()),
        names=", ".join(names),
    )
    return statement, params


# The options whose keys and deadlines a fan-out stores on deliveries (options.Stamp).
STAMPED_OPTIONS = ("ordering_key", "coalesce", "expire_after", "expire_after_by_type")
RESTAMP_CHUNK = 1000


def restamp_waiting(sub: Subscription) -> int:
    """After those options changed: the waiting deliveries' keys and deadlines, computed as a
    fan-out would now. Returns how many deliveries were waiting."""
    plan = plans_of([(sub, set())]).get(sub.pk)
    waiting = (
        Delivery.objects.filter(subscription=sub, status__in=OPEN_STATUSES)
        .select_related("event")
        .only(
            "pk",
            "event__type",
            "event__payload",
            "event__occurred_at",
            "event__received_at",
        )
        .order_by("pk")
    )
    count, last = 0, 0
    while chunk := list(waiting.filter(pk__gt=last)[:RESTAMP_CHUNK]):
        for delivery in chunk:
            stamp = plan.stamp(delivery.event) if plan and plan.stamps else Stamp()
            for name, value in asdict(stamp).items():
                setattr(delivery, name, value)
        Delivery.objects.bulk_update(chunk, list(STAMPED))
        count, last = count + len(chunk), chunk[-1].pk
    return count


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
