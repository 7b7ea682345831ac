from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_delete, post_save


class ReceiversConfig(AppConfig):
    name = "receivers"
    verbose_name = "Receiving"

    def ready(self) -> None:
        from . import metrics, refusals
        from .lookup import forget_sources
        from .models import Source, SourceSecret
        from .payload_search import register_sqlite_function

        # Refusals are written by the metrics flusher's thread, not one of their own.
        metrics.also_flush(refusals.flush_from_flusher)

        for model in (Source, SourceSecret):
            post_save.connect(forget_sources, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(
                forget_sources, sender=model, dispatch_uid=f"forget-del-{model.__name__}"
            )
        # SQLite has no JSON containment: payload search brings its own (payload_search.py).
        connection_created.connect(register_sqlite_function, dispatch_uid="hub-json-contains")
