"""Relaying's admin: subscriptions, deliveries, and what relaying adds to receivers' event page.

Django's admin autodiscovery imports this package; importing the modules registers them.
Every button and action calls a service (subscriptions/services/); replays go to Celery and
the page answers at once with a count.
"""

from . import alert_admin, backfill_admin, delivery_admin, event_admin, subscription_admin

__all__ = ["alert_admin", "backfill_admin", "delivery_admin", "event_admin", "subscription_admin"]
