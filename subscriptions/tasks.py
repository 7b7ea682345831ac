"""Thin Celery tasks: each claims its work in the database and calls a service.

Losing any of these messages loses nothing: the sweep finds the same work in the database.
The replay request is the exception, and is acknowledged late.
"""

from celery import shared_task

from . import work
from .services import backfill, drain, fanout, notify, replay
from .services.sweep import sweep_unless_running


@shared_task(name=work.FAN_OUT_PENDING, ignore_result=True)
def fan_out_pending() -> int:
    return fanout.fan_out_pending()


@shared_task(name=work.DRAIN_SUBSCRIPTION, ignore_result=True)
def drain_subscription_task(subscription_id: int) -> int:
    return drain.drain_subscription(subscription_id)


# A replay request exists only as this message: acknowledged once done, so that a worker that
# dies first leaves it to another (the other tasks' work is in the database, see settings).
@shared_task(
    name=work.REPLAY_DELIVERIES,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def replay_deliveries_task(delivery_ids: list[int]) -> int:
    return replay.replay_deliveries(delivery_ids)


# Beat sends it; every worker also sweeps by itself (services.sweep.start_sweeper).
@shared_task(name=work.SWEEP, ignore_result=True)
def sweep() -> dict | None:
    return sweep_unless_running()


@shared_task(name=work.NOTIFY_ALERTS, ignore_result=True)
def notify_alerts() -> int:
    return notify.notify_pending()


# A backfill's progress is in its row: a lost message is resumed by the sweep.
@shared_task(name=work.RUN_BACKFILL, ignore_result=True)
def run_backfill(backfill_id: int) -> int:
    return backfill.run(backfill_id)
