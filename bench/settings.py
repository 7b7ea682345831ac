"""The hub's own settings plus the bench-only baselines app and URLs.

Every phase of `make bench` runs gunicorn with DJANGO_SETTINGS_MODULE=bench.settings, so the
hub's receive endpoint and the two baselines are served by the very same processes.
"""

import os

from hub.settings import *  # noqa: F403
from hub.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baselines"]
ROOT_URLCONF = "bench.urls"

# The textbook receiver keeps its gridX secret in settings, as most tutorials do.
BENCH_GRIDX_SECRET = os.environ.get("BENCH_GRIDX_SECRET", "whsec_bench-textbook-secret")
