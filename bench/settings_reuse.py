"""bench.settings plus one suggested change, for `--experiments` only: Celery's Django fixup
closes the worker thread's database connection before and after every task unless
CELERY_DB_REUSE_MAX is set; with it, connections live on (CONN_MAX_AGE still applies)."""

from bench.settings import *  # noqa: F403

CELERY_DB_REUSE_MAX = 1000
