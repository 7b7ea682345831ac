"""Receiving's admin: sources (source_admin.py, activity.py), the event history (event_admin.py)
and refused requests (refusal_admin.py).

Django's admin autodiscovery imports this package; importing the modules registers them.
"""

from . import event_admin, refusal_admin, source_admin

__all__ = ["event_admin", "refusal_admin", "source_admin"]
