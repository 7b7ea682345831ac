"""Every setting the hub reads from the environment, in one place.

A bad or missing value raises ImproperlyConfigured when Django starts, never at the first
request. `.env.example` lists every variable; the README explains each one.
"""

from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import validate_email
from kombu import Queue

from .environment import (
    env_bool,
    env_fernet_keys,
    env_int,
    env_list,
    env_networks,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# What the embedded default writes while it runs (SQLite, the filesystem broker): one ignored
# folder, removed by `make clean`.
RUN_DIR = BASE_DIR / ".run"


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# Secrets kept at rest (source HMAC keys, signing secrets) are encrypted with these: the first
# encrypts, every one decrypts (`manage.py reencrypt_secrets` moves all to the first). Without
# DEBUG they are required; with it (`make run`) one is derived from SECRET_KEY.
HUB_SECRET_KEYS = env_fernet_keys("HUB_SECRET_KEYS", SECRET_KEY if DEBUG else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://localhost,http://127.0.0.1")

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL", f"sqlite:///{RUN_DIR / 'db.sqlite3'}"),
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] not in ("", ":memory:"):
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # SQLite serialises writers; waiting for the lock beats answering 503 under light load.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL;"
else:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)

INSTALLED_APPS = [
    # Django's admin with the hub's site: its index order and "View site" (hub/admin_site.py).
    "hub.apps.HubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "hub",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "receivers",
    "subscriptions",
]

MIDDLEWARE = [
    "hub.middleware.DatabaseUnavailableMiddleware",
    "hub.middleware.MonitoringEndpoints",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that its 400 still gets the security headers of the ones above.
    "hub.middleware.RefuseNulMiddleware",
]

ROOT_URLCONF = "hub.urls"
# Secrets are shown once through a message: keep messages server-side, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
WSGI_APPLICATION = "hub.wsgi.application"
ASGI_APPLICATION = "hub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Times with seconds and the time zone everywhere in the admin (hub/formats/en/formats.py).
FORMAT_MODULE_PATH = ["hub.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The receive endpoint reads the raw body itself; this cap also guards Django's own parsing.
HUB_MAX_BODY_BYTES = env_int("HUB_MAX_BODY_BYTES", 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = HUB_MAX_BODY_BYTES
HUB_RETENTION_DAYS = env_int("HUB_RETENTION_DAYS", 7, minimum=1)
# The purge keeps the ids of the events it deletes this long (receivers.models.SeenEvent): a
# captured request replayed later is a duplicate, not a new event.
HUB_DEDUP_DAYS = env_int("HUB_DEDUP_DAYS", 30, minimum=1)
if HUB_DEDUP_DAYS < HUB_RETENTION_DAYS:
    raise ImproperlyConfigured(
        f"HUB_DEDUP_DAYS ({HUB_DEDUP_DAYS}) must be at least HUB_RETENTION_DAYS "
        f"({HUB_RETENTION_DAYS}): an id must be remembered as long as its event is kept."
    )
HUB_ALLOW_PRIVATE_TARGETS = env_bool("HUB_ALLOW_PRIVATE_TARGETS", False)
HUB_DISABLE_AFTER_HOURS = env_int("HUB_DISABLE_AFTER_HOURS", 72, minimum=1)
HUB_SWEEP_SECONDS = env_int("HUB_SWEEP_SECONDS", 5, minimum=1)
# How long a drain keeps its subscription after running out of work, polling for more
# (0: it ends at once and the next fan-out starts a new one).
HUB_DRAIN_IDLE_SECONDS = float(env_int("HUB_DRAIN_IDLE_MS", 500, minimum=0)) / 1000
# Reverse proxies in front of the hub: a request from one of them is from the address it
# names in X-Forwarded-For, for the sources' IP allow lists (empty: REMOTE_ADDR as it is).
HUB_TRUSTED_PROXIES = env_networks("HUB_TRUSTED_PROXIES")
# The receive fast path (receivers/fastpath/): hub.asgi answers POST /hooks/… itself, in batches,
# and hands everything else to Django. Off: the plain Django view serves /hooks/ everywhere.
HUB_FAST_PATH = env_bool("HUB_FAST_PATH", False)
# How long a web process reuses a source and its secrets before reading them again (0: never).
HUB_SOURCE_CACHE_SECONDS = env_int("HUB_SOURCE_CACHE_SECONDS", 5, minimum=0)
# How long past its timeout a delivery stays claimed before the sweep hands it out again.
HUB_LEASE_MARGIN_SECONDS = env_int("HUB_LEASE_MARGIN_SECONDS", 30, minimum=1)
HUB_PUBLIC_URL = env_str("HUB_PUBLIC_URL", "http://localhost:8000").rstrip("/")
# Bearer token /metrics asks for (empty: /metrics is open, e.g. on an internal network).
HUB_METRICS_TOKEN = env_str("HUB_METRICS_TOKEN", "")
# How often each process adds what it counted to the database's totals (0: never by itself).
HUB_METRICS_FLUSH_SECONDS = env_int("HUB_METRICS_FLUSH_SECONDS", 5, minimum=0)
# Refused requests stored per source and minute; the rest are only counted (0: count only).
HUB_REFUSALS_PER_MINUTE = env_int("HUB_REFUSALS_PER_MINUTE", 60, minimum=0)

# Alerts (subscriptions/alerts/): who is told, and when a source or the backlog is alarming.
HUB_ALERT_EMAILS = env_list("HUB_ALERT_EMAILS", "")
for _address in HUB_ALERT_EMAILS:
    try:
        validate_email(_address)
    except ValidationError:
        raise ImproperlyConfigured(f"HUB_ALERT_EMAILS: {_address!r} is not an address.") from None
HUB_ALERT_SLACK_URL = env_str("HUB_ALERT_SLACK_URL", "")
if HUB_ALERT_SLACK_URL and not HUB_ALERT_SLACK_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("HUB_ALERT_SLACK_URL must be an http(s) URL.")
HUB_ALERT_REFUSALS = env_int("HUB_ALERT_REFUSALS", 20, minimum=1)
HUB_ALERT_REFUSALS_MINUTES = env_int("HUB_ALERT_REFUSALS_MINUTES", 10, minimum=1)
HUB_ALERT_BACKLOG = env_int("HUB_ALERT_BACKLOG", 10_000, minimum=1)
# Django's mail, for the alert mails: the same variables on Django 5.2 (EMAIL_* settings) and
# 6.1 (its MAILERS setting, which replaces them).
_mail_backend = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
_mail_options = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25, minimum=1),
    "username": env_str("EMAIL_HOST_USER", ""),
    "password": env_str("EMAIL_HOST_PASSWORD", ""),
    "use_tls": env_bool("EMAIL_USE_TLS", False),
    "use_ssl": env_bool("EMAIL_USE_SSL", False),
    "timeout": env_int("EMAIL_TIMEOUT", 10, minimum=1),
}
if _mail_options["use_tls"] and _mail_options["use_ssl"]:
    raise ImproperlyConfigured("Set EMAIL_USE_TLS or EMAIL_USE_SSL, not both.")
if django.VERSION >= (6, 1):
    _smtp = _mail_backend.endswith(".smtp.EmailBackend")
    MAILERS = {"default": {"BACKEND": _mail_backend, "OPTIONS": _mail_options if _smtp else {}}}
else:
    EMAIL_BACKEND = _mail_backend
    EMAIL_HOST, EMAIL_PORT = _mail_options["host"], _mail_options["port"]
    EMAIL_HOST_USER, EMAIL_HOST_PASSWORD = _mail_options["username"], _mail_options["password"]
    EMAIL_USE_TLS, EMAIL_USE_SSL = _mail_options["use_tls"], _mail_options["use_ssl"]
    EMAIL_TIMEOUT = _mail_options["timeout"]
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hub@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

HUB_LOG_FORMAT = env_str("HUB_LOG_FORMAT", "plain")
if HUB_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"HUB_LOG_FORMAT must be plain or json, got {HUB_LOG_FORMAT!r}.")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level name, got {LOG_LEVEL!r}.")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hub.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Staff only, and the model permissions the admin asks for (reads need the view one).
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAdminUser",
        "hub.permissions.ModelPermissions",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# API tokens (`manage.py create_api_token`): only their digest is stored; they do not expire,
# and are sent as `Authorization: Token <token>` as before.
REST_KNOX = {"TOKEN_TTL": None, "AUTH_HEADER_PREFIX": "Token"}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hub management API",
    "DESCRIPTION": "Sources, events, subscriptions and deliveries of the webhook hub.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Requests and responses get components of their own: write-only fields (secrets) are in
    # no response schema.
    "COMPONENT_SPLIT_REQUEST": True,
    # Events and deliveries both have a `status`: each its own enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "EventStatusEnum": "receivers.models.EventStatus",
        "DeliveryStatusEnum": "subscriptions.models.DeliveryStatus",
    },
    # Served from the installed sidecar package: the UI works with no internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = Path(env_str("HUB_FILESYSTEM_BROKER_DIR", str(RUN_DIR / "broker")))
    for _sub in ("out", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        # Broadcast messages (worker control); kombu's default is ./control.
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A publish must fail fast when Redis is down: the database sweep re-sends later.
        "max_retries": 0,
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
        "visibility_timeout": 3600,
        # A worker takes from its queues in the order listed (CELERY_TASK_QUEUES, or -Q):
        # a worker of every queue takes high-priority drains first and low ones last.
        "queue_order_strategy": "priority",
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker tries a lost broker again every few seconds (hub.consumer), and for as long as it
# takes: the work waits in the database meanwhile.
CELERY_WORKER_CONSUMER = "hub.consumer:Consumer"
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Each worker thread keeps its database connection across tasks; Celery's Django fixup would
# otherwise open a new PostgreSQL session for every task.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
# Messages are acknowledged when a task starts. Fan-out, drain and sweep tasks only point at
# work whose state is in the database, and the sweep finds it again if a worker dies; a task
# acknowledged late could also hold its message through a Redis outage, and kombu fails to
# acknowledge it when Redis returns. Replay requests, which exist only as messages, are the
# exception: that task acknowledges late (subscriptions/tasks.py).
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
# Threads: delivery is network-bound, and a subscriber that hangs until its timeout holds one
# thread while the others keep delivering (docs/performance-and-concurrency.md).
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = env_int("HUB_WORKER_CONCURRENCY", 16, minimum=1)
# Drains of high- and low-priority subscriptions have queues of their own (docs/energy.md): a
# worker started without -Q takes all three; in production one worker takes only `high`.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in ("high", "celery", "low")]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_PUBLISH_RETRY = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "subscriptions.tasks.sweep", "schedule": float(HUB_SWEEP_SECONDS)},
    "purge-old-events": {"task": "receivers.tasks.purge_old_events", "schedule": 3600.0},
}

# Lines Celery writes for every task and every periodic send: an idle hub stays quiet.
CELERY_ROUTINE = "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # One JSON object per line; event_id, source, subscription, delivery_id where given.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        # runserver's request lines (`make run`), formatted as Django does.
        "server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    # Openvolt's secret travels as ?token= in the URL: masked in every line written.
    "filters": {"url_tokens": {"()": "hub.log_filters.MaskUrlTokens"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": HUB_LOG_FORMAT,
            "filters": ["url_tokens"],
        },
        "server": {
            "class": "logging.StreamHandler",
            "formatter": "server" if HUB_LOG_FORMAT == "plain" else "json",
            "filters": ["url_tokens"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
        # Connection-pool chatter would drown everything else.
        "urllib3": {"level": "WARNING"},
        "celery.app.trace": {"level": CELERY_ROUTINE},
        "celery.worker.strategy": {"level": CELERY_ROUTINE},
        "celery.beat": {"level": CELERY_ROUTINE},
    },
}
if HUB_LOG_FORMAT == "json":
    # The web server's own loggers write through handlers of their own: in its worker
    # processes, once Django is loaded, their lines become JSON too.
    for _server_logger in ("gunicorn.error", "gunicorn.access", "uvicorn.error", "uvicorn.access"):
        LOGGING["loggers"][_server_logger] = {"handlers": ["console"], "propagate": False}
