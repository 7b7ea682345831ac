import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**_kwargs) -> None:
    """Celery logs through settings.LOGGING (its own setup would replace it, format and masks)."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.worker_ready.connect
def start_heartbeat(**_kwargs) -> None:
    from .health import start_worker_heartbeat

    start_worker_heartbeat()


@signals.worker_ready.connect
def start_sweeper(**_kwargs) -> None:
    """Every worker process sweeps by itself: recovery does not depend on beat."""
    from subscriptions.services.sweep import start_sweeper as start

    start()


@signals.task_prerun.connect
@signals.task_postrun.connect
def drop_broken_connections(sender=None, **_kwargs) -> None:
    """Before and after every task, in its worker thread: a connection that PostgreSQL dropped
    is closed, whether the error happened inside a transaction or not, so the next task opens
    a new one (Celery's fixup keeps connections for CELERY_DB_REUSE_MAX tasks, unchecked)."""
    from receivers.connections import drop_broken_connections as drop

    if sender is None or not getattr(sender.request, "is_eager", False):
        drop()


@signals.after_task_publish.connect
def beat_sent_sweep(sender=None, headers=None, **_kwargs) -> None:
    """In beat: it just sent the sweep (celery.beat marks what it sends with a header)."""
    from .health import SWEEP_TASK, beat, beat_name

    if sender == SWEEP_TASK and (headers or {}).get("celery_beat_task"):
        beat(beat_name())


@signals.task_success.connect
def beat_sweep_ran(sender=None, **_kwargs) -> None:
    """In a worker: a sweep that beat sent has run (not one run by any other caller)."""
    from .health import BEAT_SWEEP, SWEEP_TASK, beat

    if sender is not None and sender.name == SWEEP_TASK:
        if getattr(sender.request, "celery_beat_task", False):
            beat(BEAT_SWEEP)
