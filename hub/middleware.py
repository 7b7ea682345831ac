"""Answers before a view runs: 503, not 500, when the database cannot be reached (senders then
retry later), and 400 for a NUL character in the URL (PostgreSQL cannot even compare one)."""

from django.http import HttpResponse, JsonResponse

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


class RefuseNulMiddleware:
    """No admin filter, search, lookup or API filter ever sees a NUL character."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in value for value in values)
            for key, values in request.GET.lists()
        ):
            return JsonResponse({"error": "NUL characters are not accepted."}, status=400)
        return self.get_response(request)
