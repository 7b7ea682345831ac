"""Answer 503, not 500, when the database cannot be reached: senders then retry later."""

import json
import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpResponse

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, OperationalError | InterfaceError) or (
            isinstance(exception, DatabaseError) and "connection" in str(exception).lower()
        ):
            logger.error("database unavailable: %s", exception.__class__.__name__)
            response = HttpResponse(
                json.dumps({"error": "The hub cannot store events right now; retry later."}),
                status=503,
                content_type="application/json",
            )
            response["Retry-After"] = "30"
            return response
        return None
