from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Hub"


class HubAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the hub's site (hub/admin_site.py); named in INSTALLED_APPS."""

    default = False  # "hub" in INSTALLED_APPS still means HubConfig
    default_site = "hub.admin_site.HubAdminSite"
