"""Answer 503, not 500, when the database cannot be reached: senders then retry later."""

import json
import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseNotAllowed

logger = logging.getLogger(__name__)

UNAVAILABLE_BODY = json.dumps({"error": "The hub cannot store events right now; retry later."})
UNAVAILABLE_BODY = UNAVAILABLE_BODY.encode()
UNAVAILABLE_HEADERS = [("Retry-After", "30")]


def database_unavailable(exception: BaseException) -> bool:
    """True (and logged) for errors that mean the database is down or unreachable."""
    if isinstance(exception, OperationalError | InterfaceError) or (
        isinstance(exception, DatabaseError) and "connection" in str(exception).lower()
    ):
        logger.error("database unavailable: %s", exception.__class__.__name__)
        return True
    return False


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return unavailable_response(exception)


def unavailable_response(exception: BaseException) -> HttpResponse | None:
    """The 503 for a database that cannot be reached; None for any other error."""
    if not database_unavailable(exception):
        return None
    response = HttpResponse(UNAVAILABLE_BODY, status=503, content_type="application/json")
    for name, value in UNAVAILABLE_HEADERS:
        response[name] = value
    return response


class MonitoringEndpoints:
    """/healthz, /readyz and /metrics, answered before the rest of the middleware.

    Probes and Prometheus reach each process by its own address, which ALLOWED_HOSTS does not
    list; these answers build no URL from the Host header, so they skip that check."""

    def __init__(self, get_response):
        from .health import healthz, readyz
        from .metrics import metrics_view

        self.get_response = get_response
        self.views = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}

    def __call__(self, request):
        view = self.views.get(request.path_info)
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        try:
            return view(request)
        except Exception as exc:
            response = unavailable_response(exc)
            if response is None:
                raise
            return response
