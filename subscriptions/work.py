"""Asking the workers for work, naming the tasks: the services never import the tasks that call
them, so the two stay one-way (tasks -> services)."""

from celery import current_app

FAN_OUT_PENDING = "subscriptions.tasks.fan_out_pending"
DRAIN_SUBSCRIPTION = "subscriptions.tasks.drain_subscription"
REPLAY_DELIVERIES = "subscriptions.tasks.replay_deliveries"
SWEEP = "subscriptions.tasks.sweep"


def request(task_name: str, *args) -> None:
    """Publish one task message (run inline when tasks are eager); raises when the broker fails."""
    task = current_app.tasks[task_name]
    if args:
        task.apply_async(args=list(args), retry=False)
    else:
        task.apply_async(retry=False)
