"""Answer 503, not 500, when the database cannot be reached: senders then retry later."""

import json
import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponse

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
        if not database_unavailable(exception):
            return None
        response = HttpResponse(UNAVAILABLE_BODY, status=503, content_type="application/json")
        for name, value in UNAVAILABLE_HEADERS:
            response[name] = value
        return response
