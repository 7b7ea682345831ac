"""The public receive endpoint: a plain Django view.

`handle` is the whole request logic, shared with the fast path (receivers/fastpath/), which
answers the same URLs before Django's request cycle when HUB_FAST_PATH is on. Both read the
exact raw bytes, so verification sees what the platform signed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from django.conf import settings
from django.http import HttpHeaders, HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from .models import RefusalReason
from .providers.base import CaseInsensitiveDict, Incoming
from .refusals import refuse
from .services import Outcome, Verified, client_address, receive

ALLOWED = "POST"


def handle(
    method: str,
    meta: Mapping,
    read: Callable[[int], bytes],
    slug: str,
    rest: str,
    receive: Callable[[str, Incoming], Outcome | Verified] = receive,
):
    """Status, JSON body (or None for an empty one) and extra headers for one request; or,
    when `receive` is services.verify, the Verified event its caller is to store.

    `meta` is Django's request.META (under WSGI, the environ itself)."""
    if method != "POST":
        return 405, {"error": "Only POST is accepted."}, {"Allow": ALLOWED}
    limit = settings.HUB_MAX_BODY_BYTES
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, {"error": "Invalid Content-Length."}, {}
    remote_addr = client_address(meta.get("REMOTE_ADDR", ""), meta.get("HTTP_X_FORWARDED_FOR", ""))
    # Read past the limit by one byte so a body without Content-Length is still capped.
    body = b"" if declared > limit else read(limit + 1)
    if declared > limit or len(body) > limit:
        # Refused before the source is looked up: a sender cannot make the hub query for it.
        size = max(declared, len(body))
        refuse(RefusalReason.TOO_LARGE, slug, None, remote_addr, size, f"over {limit} bytes")
        return 413, {"error": f"The body is larger than {limit} bytes."}, {}
    query = meta.get("QUERY_STRING", "")
    incoming = Incoming(
        body=body,
        headers=request_headers(meta),
        query=QueryDict(query).dict() if query else {},
        path_suffix=rest,
        remote_addr=remote_addr,
    )
    outcome = receive(slug, incoming)
    if isinstance(outcome, Verified):
        return outcome
    return outcome.status, outcome.body, {}


def body_reader(request: HttpRequest) -> Callable[[int], bytes]:
    """What reads the body: request.read, except for a chunked body.

    Django reads a body without Content-Length as empty, so a platform that sent its event
    chunked would be refused for a signature that did not match nothing. A server that
    de-chunks the body and ends the stream at its end says so with `wsgi.input_terminated`
    (gunicorn does); that stream is read instead, still capped by handle()."""
    meta = request.META
    if not meta.get("CONTENT_LENGTH") and meta.get("wsgi.input_terminated"):
        return meta["wsgi.input"].read
    return request.read


def request_headers(meta: Mapping) -> CaseInsensitiveDict:
    """The request's headers, named by Django's own rule (HttpHeaders.parse_header_name) and
    lowercased as CaseInsensitiveDict keeps them; built directly, not as an HttpHeaders
    object copied into a CaseInsensitiveDict."""
    headers = CaseInsensitiveDict()
    for key, value in meta.items():
        name = HttpHeaders.parse_header_name(key)
        if name:
            dict.__setitem__(headers, name.lower(), value)
    return headers


def encode(body: dict | None) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    return json.dumps(body).encode(), "application/json"


@csrf_exempt
def receive_view(request: HttpRequest, slug: str, rest: str = "") -> HttpResponse:
    status, body, headers = handle(request.method, request.META, body_reader(request), slug, rest)
    content, content_type = encode(body)
    response = HttpResponse(content, status=status, content_type=content_type)
    for name, value in headers.items():
        response[name] = value
    return response
