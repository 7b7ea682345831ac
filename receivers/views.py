"""The public receive endpoint, served two ways with the same logic.

`receive_view` is a plain Django view. `FastReceive` (hub/wsgi.py puts it in front of Django)
answers the same URLs straight from the WSGI environ: the receive endpoint uses no session,
user, CSRF token or message, and Django's request cycle and middleware cost a busy hub more
CPU per request than verifying and storing the event. Both read the exact raw bytes, so
verification sees what the platform signed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest, get_path_info
from django.db import close_old_connections
from django.http import HttpHeaders, HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from hub.middleware import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, database_unavailable

from .providers.base import CaseInsensitiveDict, Incoming
from .services import Outcome, receive

logger = logging.getLogger(__name__)

ALLOWED = "POST"
# The same URLs as receivers/urls.py: /hooks/<slug>/, /hooks/<slug> and /hooks/<slug>/<rest>,
# matched whole like Django's (`.` matches no newline).
RECEIVE_PATH = re.compile(r"/hooks/(?P<slug>[-a-zA-Z0-9_]+)(?:/(?P<rest>.*))?")
SERVER_ERROR = b'{"error": "The hub failed to handle this request."}'


def handle(method: str, meta: Mapping, read: Callable[[int], bytes], slug: str, rest: str):
    """Status, JSON body (or None for an empty one) and extra headers for one request.

    `meta` is the WSGI environ (Django's request.META is the same dictionary)."""
    if method != "POST":
        return 405, {"error": "Only POST is accepted."}, {"Allow": ALLOWED}
    limit = settings.HUB_MAX_BODY_BYTES
    try:
        declared = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, {"error": "Invalid Content-Length."}, {}
    if declared > limit:
        return 413, {"error": f"The body is larger than {limit} bytes."}, {}
    # Read past the limit by one byte so a body without Content-Length is still capped.
    body = read(limit + 1)
    if len(body) > limit:
        return 413, {"error": f"The body is larger than {limit} bytes."}, {}
    query = meta.get("QUERY_STRING", "")
    incoming = Incoming(
        body=body,
        headers=request_headers(meta),
        query=QueryDict(query).dict() if query else {},
        path_suffix=rest,
        remote_addr=meta.get("REMOTE_ADDR", ""),
    )
    outcome: Outcome = receive(slug, incoming)
    return outcome.status, outcome.body, {}


def request_headers(meta: Mapping) -> CaseInsensitiveDict:
    """The request's headers, named by Django's own rule (HttpHeaders.parse_header_name) and
    lowercased as CaseInsensitiveDict keeps them; built directly, at half the cost of an
    HttpHeaders object copied into a CaseInsensitiveDict."""
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
    status, body, headers = handle(request.method, request.META, request.read, slug, rest)
    content, content_type = encode(body)
    response = HttpResponse(content, status=status, content_type=content_type)
    for name, value in headers.items():
        response[name] = value
    return response


class FastReceive:
    """WSGI middleware: receive requests are answered here, everything else goes to Django."""

    def __init__(self, application: Callable):
        self.application = application

    def __call__(self, environ: dict, start_response: Callable):
        path = get_path_info(environ)
        match = RECEIVE_PATH.fullmatch(path) if path.startswith("/hooks/") else None
        if match is None:
            return self.application(environ, start_response)
        try:
            status, headers, content = self.answer(environ, match["slug"], match["rest"] or "")
        finally:
            # What Django does at the end of each request: drop broken or expired connections.
            close_old_connections()
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [content]

    def answer(self, environ: dict, slug: str, rest: str) -> tuple[int, list, bytes]:
        # Django's own request object: the same path decoding, body stream and Host check.
        request = WSGIRequest(environ)
        try:
            request.get_host()
            status, body, extra = handle(request.method, request.META, request.read, slug, rest)
        except DisallowedHost:
            status, body, extra = 400, {"error": "Invalid Host header."}, {}
        except Exception as exc:
            json_type = ("Content-Type", "application/json")
            if database_unavailable(exc):
                return 503, [json_type, *UNAVAILABLE_HEADERS, *security_headers()], UNAVAILABLE_BODY
            logger.exception("receive failed for source %s", slug)
            return 500, [json_type, *security_headers()], SERVER_ERROR
        content, content_type = encode(body)
        headers = [("Content-Length", str(len(content))), *extra.items(), *security_headers()]
        if content_type:
            headers.append(("Content-Type", content_type))
        return status, headers, content


def security_headers() -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to the Django view's answers
    (for a plain-HTTP request, as a proxy in front of the hub passes it on)."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        if not isinstance(policy, str):
            policy = ",".join(policy)
        headers.append(("Referrer-Policy", policy))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    return headers
