"""Receiving's admin: sources (source_admin.py) and the event history (event_admin.py).

Django's admin autodiscovery imports this package; importing the modules registers them.
"""

from . import event_admin, source_admin

__all__ = ["event_admin", "source_admin"]
