"""The test suite's small override of hub.settings (the environment still decides the rest)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
# Also read by the processes the reliability tests start (they share the test database).
os.environ.setdefault("HUB_SECRET_KEYS", "r2q0Ppq9XhQTEAYX2HNsITA28eDgWljcMQhdN-ACFuY=")
os.environ.setdefault("HUB_ALLOW_PRIVATE_TARGETS", "1")
# Tasks run inline here: a drain waiting for more work would only slow every test down.
os.environ.setdefault("HUB_DRAIN_IDLE_MS", "0")
# No flusher thread writing behind the tests' backs: tests flush when they mean to.
os.environ.setdefault("HUB_METRICS_FLUSH_SECONDS", "0")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# In-process tests run tasks inline; the reliability tests start real workers instead.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Tests run without collectstatic: WhiteNoise looks for static files on request, not at start.
WHITENOISE_AUTOREFRESH = True
