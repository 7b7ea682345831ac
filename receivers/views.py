"""The public receive endpoint, served two ways with the same logic.

`receive_view` is a plain Django view. `FastReceive` (hub/wsgi.py puts it in front of Django)
answers the same URLs straight from the WSGI environ: the receive endpoint uses no session,
user, CSRF token or message, and Django's request cycle and middleware cost a busy hub more
CPU per request than verifying and storing the event. Both read the exact raw bytes, so
verification sees what the platform signed. Under the hub's gunicorn worker (receivers/worker.py)
FastReceive also answers, with answer_together, the requests its event loop took together.
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
from django.db import IntegrityError, close_old_connections
from django.http import HttpHeaders, HttpRequest, HttpResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from .group_commit import MAX_BATCH, Pending, writer
from .models import RefusalReason
from .providers.base import CaseInsensitiveDict, Incoming
from .refusals import refuse
from .services import Outcome, Verified, client_address, not_stored, receive, stored, verify
from .unavailable import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, database_unavailable

logger = logging.getLogger(__name__)

ALLOWED = "POST"
# The same URLs as receivers/urls.py: /hooks/<slug>/, /hooks/<slug> and /hooks/<slug>/<rest>,
# matched whole like Django's (`.` matches no newline).
RECEIVE_PATH = re.compile(r"/hooks/(?P<slug>[-a-zA-Z0-9_]+)(?:/(?P<rest>.*))?")
SERVER_ERROR = b'{"error": "The hub failed to handle this request."}'


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

    `meta` is the WSGI environ (Django's request.META is the same dictionary)."""
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


class FastReceive:
    """WSGI middleware: receive requests are answered here, everything else goes to Django."""

    def __init__(self, application: Callable):
        self.application = application

    def __call__(self, environ: dict, start_response: Callable):
        route = self.route(environ)
        if route is None:
            return self.application(environ, start_response)
        try:
            status, headers, content = self.answer(environ, *route)
        finally:
            # What Django does at the end of each request: drop broken or expired connections.
            close_old_connections()
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [content]

    def route(self, environ: dict) -> tuple[str, str] | None:
        """The source's slug and the rest of the path, for a receive URL."""
        path = get_path_info(environ)
        match = RECEIVE_PATH.fullmatch(path) if path.startswith("/hooks/") else None
        return None if match is None else (match["slug"], match["rest"] or "")

    def answer(self, environ: dict, slug: str, rest: str) -> tuple[int, list, bytes]:
        answer = self.begin(environ, slug, rest, receive)
        assert not isinstance(answer, Verified)  # receive() stores the event itself
        return answer

    def answer_together(self, environs: list[dict]) -> list[tuple[int, list, bytes] | None]:
        """Answers for requests that arrived together (receivers.worker).

        Each is verified as answer() would; the verified events are stored in one INSERT and
        one commit, and only then answered. None for a request that is not a receive URL:
        the whole application is to answer it."""
        answers: list = []
        verified: list[int] = []
        for environ in environs:
            route = self.route(environ)
            answers.append(None if route is None else self.begin(environ, *route))
            if isinstance(answers[-1], Verified):
                verified.append(len(answers) - 1)
        for start in range(0, len(verified), MAX_BATCH):
            chunk = verified[start : start + MAX_BATCH]
            batch = [Pending(answers[i].event) for i in chunk]
            writer.write_batch(batch)  # never raises: each item gets its id or the error
            for i, item in zip(chunk, batch, strict=True):
                answers[i] = self.finish(answers[i], item.pk, item.error)
        close_old_connections()
        return answers

    def begin(
        self, environ: dict, slug: str, rest: str, receive=verify
    ) -> tuple[int, list, bytes] | Verified:
        """The answer; or, with services.verify (receivers.worker), the verified event that
        its caller stores and then answers with finish()."""
        # Django's own request object: the same path decoding, body stream and Host check.
        request = WSGIRequest(environ)
        try:
            request.get_host()
            read = body_reader(request)
            result = handle(request.method, request.META, read, slug, rest, receive)
        except DisallowedHost:
            result = 400, {"error": "Invalid Host header."}, {}
        except Exception as exc:  # noqa: BLE001 - failed() logs it, answers 503 or 500
            return failed(exc, slug)
        if isinstance(result, Verified):
            return result
        return encoded(*result)

    def finish(
        self, verified: Verified, event_id: int | None, error: BaseException | None
    ) -> tuple[int, list, bytes]:
        """The answer for a verified event once the database took it, or failed to."""
        try:
            if error is None:
                outcome = stored(verified, event_id)
            elif isinstance(error, IntegrityError):
                outcome = not_stored(verified, error)
            else:
                raise error
        except Exception as exc:  # noqa: BLE001 - failed() logs it, answers 503 or 500
            return failed(exc, verified.slug)
        return encoded(outcome.status, outcome.body, {})


def failed(exc: Exception, slug: str) -> tuple[int, list, bytes]:
    json_type = ("Content-Type", "application/json")
    if database_unavailable(exc):
        return 503, [json_type, *UNAVAILABLE_HEADERS, *security_headers()], UNAVAILABLE_BODY
    logger.exception("receive failed for source %s", slug, exc_info=exc, extra={"source": slug})
    return 500, [json_type, *security_headers()], SERVER_ERROR


def encoded(status: int, body: dict | None, extra: Mapping[str, str]) -> tuple[int, list, bytes]:
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
