"""The fast path's ASGI application: webhooks answered here, everything else by Django.

The event loop never waits on anything but sockets: it reads a body (bounded in size and in
time), hands the request to the writer thread (batches.py) and awaits its answer (bounded in
time: a database that does not answer gives 503 with Retry-After), then writes the answer
through the server's transport, which never blocks the loop: a client that does not read holds
its own connection, nothing else.
"""

from __future__ import annotations

import asyncio
import io
import re

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest

from ..models import RefusalReason
from ..refusals import refuse
from ..services import client_address
from .batches import Answer, BatchWriter, Job, encoded, unavailable
from .server import check_server

# The same URLs as receivers/urls.py: /hooks/<slug>/, /hooks/<slug> and /hooks/<slug>/<rest>,
# matched whole like Django's (`.` matches no newline).
RECEIVE_PATH = re.compile(r"/hooks/(?P<slug>[-a-zA-Z0-9_]+)(?:/(?P<rest>.*))?")
# A body still arriving after this long is refused (408): a slow sender holds one connection,
# and not for ever.
BODY_SECONDS = 10.0
# How long a request waits for the database before it is answered 503 (gridX wants an answer
# within 5 s and retries a 503).
ANSWER_SECONDS = 4.5
# Requests handed to the writer and not yet taken (those it gave up waiting for included):
# past this, a process whose database hangs answers 503 at once instead of queueing more.
MAX_WAITING = 5000


class TooLarge(Exception):
    pass


class Unreadable(Exception):
    """The body ended without its end: the client left, or the server could not read it
    (a malformed chunked body)."""


class FastPath:
    def __init__(self, application, writer: BatchWriter | None = None):
        self.application = application
        self.writer = writer or BatchWriter()

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.application(scope, receive, send)
            return
        route = receive_route(scope) if scope["method"] == "POST" else None
        try:
            body = await read_body(scope, receive)
        except TimeoutError:
            await respond(send, refusal(scope, 408, "The body took too long to arrive."), True)
            return
        except TooLarge:
            limit = settings.HUB_MAX_BODY_BYTES
            if route is not None:
                size = declared_length(scope) or limit + 1
                detail = f"over {limit} bytes"
                refuse(RefusalReason.TOO_LARGE, route[0], None, scope_address(scope), size, detail)
            message = f"The body is larger than {limit} bytes."
            await respond(send, refusal(scope, 413, message), True)
            return
        except Unreadable:
            # Answered anyway: the server drops it if the client is gone.
            await respond(send, refusal(scope, 400, "The body could not be read."), True)
            return
        if route is None:
            await self.application(scope, replay(body, receive), send)
            return
        await respond(send, await self.answer(scope, body, *route), False)

    async def answer(self, scope: dict, body: bytes, slug: str, rest: str) -> Answer:
        if self.writer.waiting() >= MAX_WAITING:
            return unavailable(is_secure(scope))
        loop = asyncio.get_running_loop()
        job = Job(scope, body, slug, rest, loop, loop.create_future())
        self.writer.submit(job)
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                return await job.future
        except TimeoutError:
            job.abandoned = True
            return unavailable(is_secure(scope))

    async def lifespan(self, scope: dict, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                check_server(scope)
                self.writer.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.writer.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def receive_route(scope: dict) -> tuple[str, str] | None:
    """The source's slug and the rest of the path, for a receive URL (path as Django sees it,
    below the script prefix)."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    match = RECEIVE_PATH.fullmatch(path) if path.startswith("/hooks/") else None
    return None if match is None else (match["slug"], match["rest"] or "")


async def read_body(scope: dict, receive) -> bytes:
    """The whole body, at most HUB_MAX_BODY_BYTES, within BODY_SECONDS."""
    limit = settings.HUB_MAX_BODY_BYTES
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise TooLarge
    chunks, size = [], 0
    async with asyncio.timeout(BODY_SECONDS):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Unreadable
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def declared_length(scope: dict) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def replay(body: bytes, receive):
    """What Django's handler reads: the body already read, then the connection's own events
    (Django listens for a disconnect while the view runs)."""
    sent = False

    async def receive_again() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def scope_address(scope: dict) -> str:
    """The client's address as the allow lists see it (behind a trusted proxy, the platform's)."""
    client = scope.get("client") or ("", 0)
    forwarded = dict(scope["headers"]).get(b"x-forwarded-for", b"").decode("latin-1")
    return client_address(client[0] or "", forwarded)


def is_secure(scope: dict) -> bool:
    return ASGIRequest(scope, io.BytesIO()).is_secure()


def refusal(scope: dict, status: int, message: str) -> Answer:
    return encoded(status, {"error": message}, {}, secure=is_secure(scope))


async def respond(send, answer: Answer, close: bool) -> None:
    headers = answer.headers
    if close:
        # The rest of the body is not read: the connection cannot carry another request.
        headers = [*headers, (b"connection", b"close")]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
