"""The ASGI application. With HUB_FAST_PATH on, receivers.fastpath answers the receive URLs
in batches and hands everything else to Django's handler (docs/performance-and-concurrency.md).
"""

import gc
import os
import warnings

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
application = get_asgi_application()

# Imported once Django is set up.
from django.conf import settings  # noqa: E402

from subscriptions.dispatch import prepare  # noqa: E402

# Django's ASGI handler runs each request's view in a thread of its own, which a persistent
# connection would outlive (Django's documentation: disable them under ASGI). The fast path's
# writer thread keeps its own connection.
for database in settings.DATABASES.values():
    database["CONN_MAX_AGE"] = 0
# WhiteNoise serves static files as sync iterators; Django warns of the thread it reads
# them on, which is what a static file costs here and needs no action.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators", module=r"django\."
)
if settings.HUB_FAST_PATH:
    from receivers.fastpath import FastPath

    application = FastPath(application)
prepare()

# Everything loaded so far lives as long as the process. Frozen, the garbage collector's full
# passes no longer walk it: they took tens of milliseconds with Django, DRF and Celery loaded,
# and held every request of the process meanwhile.
gc.collect()
gc.freeze()
