"""Thin Celery tasks: each claims its work in the database and calls a service.

Losing any of these messages loses nothing: `sweep` finds the same work in the database.
"""

from celery import shared_task

from . import services


@shared_task(name="subscriptions.tasks.fan_out_pending", ignore_result=True)
def fan_out_pending() -> int:
    return services.fan_out_pending()


@shared_task(name="subscriptions.tasks.drain_subscription", ignore_result=True)
def drain_subscription_task(subscription_id: int) -> int:
    return services.drain_subscription(subscription_id)


@shared_task(name="subscriptions.tasks.replay_deliveries", ignore_result=True)
def replay_deliveries_task(delivery_ids: list[int]) -> int:
    return services.replay_deliveries(delivery_ids)


@shared_task(name="subscriptions.tasks.sweep", ignore_result=True)
def sweep() -> dict:
    return services.sweep()
