from celery import shared_task


@shared_task(name="bench.baselines.process_textbook_event", ignore_result=True)
def process_textbook_event(event_pk: int) -> int:
    """The textbook's "process it later" task; the receive benchmark runs no worker."""
    return event_pk
