"""The public receive endpoint: a plain Django view, so verification sees the exact raw bytes."""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .providers.base import CaseInsensitiveDict, Incoming
from .services import receive

ALLOWED = "POST"


def json_response(status: int, body: dict | None) -> HttpResponse:
    if body is None:
        return HttpResponse(status=status, content=b"")
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


@csrf_exempt
def receive_view(request: HttpRequest, slug: str, rest: str = "") -> HttpResponse:
    if request.method != "POST":
        response = json_response(405, {"error": "Only POST is accepted."})
        response["Allow"] = ALLOWED
        return response
    limit = settings.HUB_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return json_response(400, {"error": "Invalid Content-Length."})
    if declared > limit:
        return json_response(413, {"error": f"The body is larger than {limit} bytes."})
    # Read past the limit by one byte so a body without Content-Length is still capped.
    body = request.read(limit + 1)
    if len(body) > limit:
        return json_response(413, {"error": f"The body is larger than {limit} bytes."})
    incoming = Incoming(
        body=body,
        headers=CaseInsensitiveDict(request.headers.items()),
        query=request.GET.dict(),
        path_suffix=rest,
        remote_addr=request.META.get("REMOTE_ADDR", ""),
    )
    outcome = receive(slug, incoming)
    return json_response(outcome.status, outcome.body)
