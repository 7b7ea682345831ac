"""The WSGI application: Django's own (the receive fast path is ASGI: hub/asgi.py)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
application = get_wsgi_application()

from subscriptions.dispatch import prepare  # noqa: E402

prepare()

# Everything loaded so far lives as long as the process. Frozen, the garbage collector's full
# passes no longer walk it: they took tens of milliseconds with Django, DRF and Celery loaded,
# and held every request of the process meanwhile.
gc.collect()
gc.freeze()
