"""Asking the workers for work, naming the tasks: the services never import the tasks that call
them, so the two stay one-way (tasks -> services)."""

import logging
from collections.abc import Iterable

from celery import current_app

from .models import Priority, Subscription

logger = logging.getLogger(__name__)

FAN_OUT_PENDING = "subscriptions.tasks.fan_out_pending"
DRAIN_SUBSCRIPTION = "subscriptions.tasks.drain_subscription"
REPLAY_DELIVERIES = "subscriptions.tasks.replay_deliveries"
SWEEP = "subscriptions.tasks.sweep"
NOTIFY_ALERTS = "subscriptions.tasks.notify_alerts"
RUN_BACKFILL = "subscriptions.tasks.run_backfill"


# The queue of a subscription's drains, by its priority; normal ones use the default queue.
QUEUES = {Priority.HIGH: "high", Priority.LOW: "low"}


def request(task_name: str, *args, queue: str | None = None) -> None:
    """Publish one task message (run inline when tasks are eager); raises when the broker fails."""
    task = current_app.tasks[task_name]
    options = {"queue": queue} if queue else {}
    if args:
        task.apply_async(args=list(args), retry=False, **options)
    else:
        task.apply_async(retry=False, **options)


def drain_queues(subscription_ids: set[int]) -> dict[int, str]:
    """The queues of those that are not normal priority (one indexed query)."""
    if not subscription_ids:
        return {}
    return {
        sub_id: QUEUES[priority]
        for sub_id, priority in Subscription.objects.filter(pk__in=subscription_ids)
        .exclude(priority=Priority.NORMAL)
        .values_list("pk", "priority")
    }


def request_drains(subscription_ids: Iterable[int]) -> None:
    ids = set(subscription_ids)
    queues = drain_queues(ids)
    for sub_id in ids:
        try:
            request(DRAIN_SUBSCRIPTION, sub_id, queue=queues.get(sub_id))
        except Exception as exc:  # noqa: BLE001 - the sweep requests it again
            logger.warning(
                "could not request a drain of subscription %s: %s",
                sub_id,
                exc,
                extra={"subscription": sub_id},
            )
            return
