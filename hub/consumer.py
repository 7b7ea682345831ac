"""The worker's consumer of task messages (settings.CELERY_WORKER_CONSUMER; only workers load
this module)."""

from functools import partial

from celery.worker.consumer import Consumer as CeleryConsumer

# The longest wait between a worker's tries to reach a lost broker.
BROKER_RETRY_MAX_SECONDS = 5


class Consumer(CeleryConsumer):
    """Celery's consumer, trying a lost broker again at least every BROKER_RETRY_MAX_SECONDS:
    kombu's own waits grow by 2 s up to 30 s, too long for work to resume within seconds of
    Redis's return."""

    def ensure_connected(self, conn):
        conn.ensure_connection = partial(
            conn.ensure_connection,
            interval_start=1,
            interval_step=1,
            interval_max=BROKER_RETRY_MAX_SECONDS,
        )
        return super().ensure_connected(conn)
