from celery import shared_task

from . import retention


@shared_task(name="receivers.tasks.purge_old_events", ignore_result=True)
def purge_old_events() -> int:
    return retention.purge_old_events()
