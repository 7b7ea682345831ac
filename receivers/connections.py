"""Database connections of long-lived threads: Celery workers' and the fast path's writer.

Django drops a broken or expired connection at the end of each web request; nothing does in a
Celery worker thread (Celery's Django fixup only counts tasks when CELERY_DB_REUSE_MAX keeps
connections), nor in a drain that runs for many batches, nor in a background thread. There a
connection that PostgreSQL dropped (a restart, a terminated backend) fails every later query,
unless its thread drops it: then the next query opens a new one.
"""

from django.db import connections


def drop_broken_connections() -> None:
    """Close this thread's connections that failed or outlived DATABASE_CONN_MAX_AGE.

    A connection in use by a transaction (a test's, or a caller's) is left alone. With
    `conn_health_checks` (settings) the next query first checks that the kept one answers.
    """
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def drop_failed_connections() -> None:
    """Close this thread's connections that failed and no longer answer, whatever their age:
    for a thread that keeps its connection for good (the fast path's writer)."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or not conn.errors_occurred or conn.in_atomic_block:
            continue
        if conn.is_usable():
            conn.errors_occurred = False
        else:
            conn.close()
