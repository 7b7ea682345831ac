"""The headers Django's configured MIDDLEWARE adds to a receive answer, for the fast path.

Found by running the middleware once (per scheme: SecurityMiddleware adds HSTS to secure
requests only) on a representative request to a view that answers as receive_view does, so
a middleware added to settings later shows up on the fast path's answers too.
"""

from __future__ import annotations

import io
import logging
import threading

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.base import BaseHandler
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.urls import re_path, set_urlconf
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]

_cache: dict[bool, Headers] = {}
_lock = threading.Lock()


def middleware_headers(secure: bool) -> Headers:
    found = _cache.get(secure)
    if found is None:
        with _lock:
            found = _cache[secure] = added_by_middleware(secure)
    return found


def forget(**kwargs) -> None:
    _cache.clear()


setting_changed.connect(forget)


@csrf_exempt
def representative_view(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(b"{}", content_type="application/json")
    response.view_headers = {name.lower() for name in response.headers}
    return response


class RepresentativeURLs:
    urlpatterns = [re_path(r"^hooks/", representative_view)]


def added_by_middleware(secure: bool) -> Headers:
    handler = BaseHandler()
    handler.load_middleware()
    request = representative_request(secure)
    try:
        response = handler.get_response(request)
    finally:
        set_urlconf(None)
    own = getattr(response, "view_headers", None)
    if own is None or response.status_code != 200:
        logger.warning(
            "MIDDLEWARE answered a receive request itself (status %s): the fast path does not "
            "do what it did, it only adds the headers it added",
            response.status_code,
        )
        own = set()
    # The fast path describes its own bodies.
    own |= {"content-type", "content-length"}
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.items()
        if name.lower() not in own
    ]


def representative_request(secure: bool) -> ASGIRequest:
    host = representative_host()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/hooks/representative/",
        "query_string": b"",
        "scheme": "https" if secure else "http",
        "server": (host, 443 if secure else 80),
        "client": ("127.0.0.1", 0),
        "headers": [
            (b"host", host.encode("idna")),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
        ],
    }
    request = ASGIRequest(scope, io.BytesIO(b"{}"))
    request.urlconf = RepresentativeURLs
    return request


def representative_host() -> str:
    """A host name ALLOWED_HOSTS accepts (CommonMiddleware checks it)."""
    for pattern in settings.ALLOWED_HOSTS:
        if pattern != "*" and not pattern.startswith("["):
            return pattern.lstrip(".") or "localhost"
    return "localhost"
