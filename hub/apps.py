from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Hub"

    def ready(self) -> None:
        from django.conf import settings

        from receivers import metrics

        from .log_filters import mask_every_record
        from .metrics import add_from_flusher

        mask_every_record()
        metrics.flush_to(add_from_flusher, settings.HUB_METRICS_FLUSH_SECONDS)
