"""The hub's admin site: receiving and relaying first on the index, "View site" to the dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse_lazy

# The index lists these apps in this order; any other app comes after relaying.
FIRST = ("receivers", "subscriptions")
LAST = ("auth", "knox")


def app_rank(app_label: str) -> int:
    if app_label in FIRST:
        return FIRST.index(app_label)
    if app_label in LAST:
        return len(FIRST) + 1 + LAST.index(app_label)
    return len(FIRST)


class HubAdminSite(admin.AdminSite):
    site_header = "Webhook hub"
    site_title = "Webhook hub"
    site_url = reverse_lazy("hub-dashboard")

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        # sorted() is stable: apps of the same rank keep Django's alphabetical order.
        return sorted(apps, key=lambda app: app_rank(app["app_label"]))
