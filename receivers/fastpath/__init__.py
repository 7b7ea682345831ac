"""The receive fast path, switched on by HUB_FAST_PATH (hub/asgi.py wraps Django's ASGI app).

An ASGI application (app.py) answers `POST /hooks/…` itself and hands every other request to
Django's own ASGI handler. Its event loop only reads bodies and writes answers; one writer
thread per process (batches.py) takes every request waiting, verifies them with the same code
as the plain view (views.handle, services.verify), stores the verified events in one INSERT
and one commit, and only then are they answered. The answers carry the headers Django's
configured middleware adds (headers.py). Served by Granian, through its public command line:

    granian --interface asgi --http 1 --no-ws --loop uvloop --workers 2 hub.asgi:application

With the setting off, hub/asgi.py and hub/wsgi.py are Django's plain applications and
receivers.views.receive_view answers /hooks/. See docs/performance-and-concurrency.md.
"""

from .app import FastPath

__all__ = ["FastPath"]
