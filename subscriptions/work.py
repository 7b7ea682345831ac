"""Asking the workers for work, naming the tasks: the services never import the tasks that call
them, so the two stay one-way (tasks -> services)."""

import logging
from collections.abc import Iterable

from celery import current_app

logger = logging.getLogger(__name__)

FAN_OUT_PENDING = "subscriptions.tasks.fan_out_pending"
DRAIN_SUBSCRIPTION = "subscriptions.tasks.drain_subscription"
REPLAY_DELIVERIES = "subscriptions.tasks.replay_deliveries"
SWEEP = "subscriptions.tasks.sweep"
NOTIFY_ALERTS = "subscriptions.tasks.notify_alerts"
RUN_BACKFILL = "subscriptions.tasks.run_backfill"


def request(task_name: str, *args) -> None:
    """Publish one task message (run inline when tasks are eager); raises when the broker fails."""
    task = current_app.tasks[task_name]
    if args:
        task.apply_async(args=list(args), retry=False)
    else:
        task.apply_async(retry=False)


def request_drains(subscription_ids: Iterable[int]) -> None:
    for sub_id in subscription_ids:
        try:
            request(DRAIN_SUBSCRIPTION, sub_id)
        except Exception as exc:  # noqa: BLE001 - the sweep requests it again
            logger.warning(
                "could not request a drain of subscription %s: %s",
                sub_id,
                exc,
                extra={"subscription": sub_id},
            )
            return
