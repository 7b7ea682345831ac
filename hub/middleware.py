"""Answers before a view runs: 503, not 500, when the database cannot be reached (senders then
retry later), and 400 for a NUL character in the URL (PostgreSQL cannot even compare one)."""

from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse

from receivers.unavailable import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, database_unavailable


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
