"""Answer 503, not 500, when the database cannot be reached: senders then retry later."""

from django.http import HttpResponse

from receivers.unavailable import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, database_unavailable


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
