from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


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


class HubAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the hub's site (hub/admin_site.py); named in INSTALLED_APPS."""

    default = False  # "hub" in INSTALLED_APPS still means HubConfig
    default_site = "hub.admin_site.HubAdminSite"
