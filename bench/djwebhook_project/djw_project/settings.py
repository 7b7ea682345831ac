"""Settings of the django-webhook baseline: PostgreSQL and Redis from the environment."""

import os
from urllib.parse import urlsplit

SECRET_KEY = os.environ.get("SECRET_KEY", "djw-bench-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_webhook",
    "intake",
]
# The same middleware a default project has (minus sessions/auth/messages, unused here).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "djw_project.urls"
WSGI_APPLICATION = "djw_project.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_db = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djw_bench"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": _db.port or 5432,
        # The hub's own database settings, so neither side wins on connection handling.
        "CONN_MAX_AGE": int(os.environ.get("DJW_CONN_MAX_AGE", "60")),
        "CONN_HEALTH_CHECKS": True,
    }
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes the worker's database connection after every task unless this
# is set (then CONN_MAX_AGE decides, as in the hub's hub/settings.py, which sets 1000). The
# bench runs django-webhook with it (its best) and without it (Celery's default, for reference).
if os.environ.get("DJW_CELERY_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["DJW_CELERY_DB_REUSE_MAX"])

# django-webhook: send webhooks when intake.Event rows are created (its quickstart's setup).
DJANGO_WEBHOOK = {"MODELS": ["intake.Event"]}
GRIDX_SECRET = os.environ.get("BENCH_GRIDX_SECRET", "whsec_bench-textbook-secret")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
