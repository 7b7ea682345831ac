import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django_application = get_wsgi_application()

# Imported after Django is set up: the receive endpoint answers before Django's request cycle.
from receivers.views import FastReceive  # noqa: E402
from subscriptions.dispatch import prepare  # noqa: E402

application = FastReceive(django_application)
prepare()

# Everything loaded so far lives as long as the process. Frozen, the garbage collector's full
# passes no longer walk it: they took tens of milliseconds with Django, DRF and Celery loaded,
# and held every request of the process meanwhile.
gc.collect()
gc.freeze()
