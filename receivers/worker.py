"""gunicorn's gthread worker, with whole webhook requests answered in batches by its event loop.

A webhook is acknowledged only once its row is committed, so on gthread each request held a
thread while its row was written: the thread slept on the group commit or the database, and
was woken again, as was the main thread the answer went back to. On a busy hub those hand-offs
cost more CPU than everything else the request did. Here the main thread, which already
watches every kept-alive connection (and here watches new ones too), takes each one whose
webhook request has entirely arrived: it verifies them all, stores them in one INSERT and one
commit, then answers them.
Everything else (the admin, the API, a request still arriving, TLS, HTTP/2) goes to the thread
pool exactly as on gthread.

    gunicorn hub.wsgi --worker-class receivers.worker.HubWorker --threads 4 --reuse-port
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from http import HTTPStatus

from gunicorn import http
from gunicorn.http import wsgi
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, TConn, ThreadWorker

# A request is answered by the loop only when it is entirely in the socket's buffer within
# this many bytes (webhooks are far smaller); a larger one goes to the thread pool.
PEEK_BYTES = 65536
PREFIX = b"POST /hooks/"


def whole_request(data: bytes) -> bool:
    """Whether `data` starts with a whole `POST /hooks/…` request of the plainest kind.

    Plainest: a single Content-Length, no Transfer-Encoding and no Expect, so that reading it
    can never wait for the client. Anything else is left to gunicorn's thread pool, whose
    parser answers it (or refuses it) as on any other URL."""
    if not data.startswith(PREFIX):
        return False
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    if b"\ntransfer-encoding:" in head or b"\nexpect:" in head:
        return False
    start = head.find(b"\ncontent-length:")
    if start < 0 or head.find(b"\ncontent-length:", start + 1) >= 0:
        return False
    value_end = head.find(b"\n", start + 1)
    value = head[start + len(b"\ncontent-length:") : value_end if value_end >= 0 else None]
    value = value.strip()
    return value.isdigit() and len(data) >= end + 4 + int(value)


@dataclass(eq=False)
class InLoop:
    """One request the loop is answering."""

    conn: TConn
    req: http.Request | None = None
    resp: wsgi.Response | None = None
    environ: dict | None = None
    started: datetime | None = None
    answer: tuple[int, list, bytes] | None = None
    broken: bool = False
    keepalive: bool = False


class HubWorker(ThreadWorker):
    """See the module docstring. Without FastReceive in front of the application, or with
    TLS, it is gthread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.receiver = None
        # Kept-alive connections whose whole webhook request has arrived, for this turn.
        self.ready: list[TConn] = []

    def load_wsgi(self) -> None:
        super().load_wsgi()
        from receivers.views import FastReceive

        if isinstance(self.wsgi, FastReceive) and not self.cfg.is_ssl:
            self.receiver = self.wsgi

    def accept(self, listener) -> None:
        """A new connection waits in the poller for its first request, not in a pool thread:
        webhook senders often open a connection per delivery."""
        if self.receiver is None:
            super().accept(listener)
            return
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        # As long as a pool thread would wait for it before giving up on it.
        conn.timeout = time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def on_pending_socket_readable(self, conn: TConn, client) -> None:
        if self.take_if_whole(conn, client, self.pending_conns):
            return
        super().on_pending_socket_readable(conn, client)

    def on_client_socket_readable(self, conn: TConn, client) -> None:
        if self.take_if_whole(conn, client, self.keepalived_conns):
            return
        super().on_client_socket_readable(conn, client)

    def take_if_whole(self, conn: TConn, client, waiting) -> bool:
        """Take the connection for this turn's batch if a whole webhook request is waiting."""
        if self.receiver is None or not self.alive or conn.is_http2:
            return False
        if conn.parser is None:
            # A new connection: the pool thread would make its parser. Not here when the
            # first bytes might be an HTTP/2 preface.
            if negotiation.prior_knowledge_allowed(self.cfg, conn.client):
                return False
        elif conn.parser.unreader.buf.getvalue():
            return False
        try:
            data = conn.sock.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return False
        if not whole_request(data):
            return False
        self.poller.unregister(client)
        waiting.remove(conn)
        conn.init()
        self.ready.append(conn)
        return True

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        super().wait_for_and_dispatch_events(timeout)
        if self.ready:
            ready, self.ready = self.ready, []
            self.serve(ready)

    def serve(self, ready: list[TConn]) -> None:
        """Verify every ready request, store the verified events together, answer them all."""
        requests = [self.begin(conn) for conn in ready]
        parsed = [r for r in requests if not r.broken]
        try:
            answers = self.receiver.answer_together([r.environ for r in parsed])
        except Exception as exc:  # noqa: BLE001 - each answer says nothing was stored
            for r in parsed:
                self.failed(r, exc)
        else:
            for r, answer in zip(parsed, answers, strict=True):
                r.answer = answer
        for r in requests:
            self.respond(r)
            done = futures.Future()
            done.set_result(r.keepalive)
            # gthread's own bookkeeping: back to the poller, or closed.
            self.finish_request(r.conn, done)

    def begin(self, conn: TConn) -> InLoop:
        """Parse the request, as gthread's handle_request does up to calling the application."""
        r = InLoop(conn)
        try:
            conn.sock.setblocking(True)
            r.req = next(conn.parser)
            self.cfg.pre_request(self, r.req)
            r.started = datetime.now()
            resp, environ = wsgi.create(r.req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            r.resp = resp
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or not self.cfg.keepalive:
                resp.force_close()
            elif len(self.keepalived_conns) >= self.max_keepalived:
                resp.force_close()
            r.environ = environ
        except Exception as exc:  # noqa: BLE001 - handled as gthread's handle() does
            self.failed(r, exc)
        return r

    def run_application(self, r: InLoop) -> None:
        """The whole WSGI application, answering at once, as gthread's handle_request does."""
        respiter = self.wsgi(r.environ, r.resp.start_response)
        try:
            for item in respiter:
                r.resp.write(item)
            r.resp.close()
        finally:
            if hasattr(respiter, "close"):
                respiter.close()
        self.answered(r)

    def respond(self, r: InLoop) -> None:
        try:
            if r.broken:
                pass  # already answered by failed(), if at all
            elif r.answer is None:
                # A /hooks/ URL that is not a receive URL: Django answers it (a 404).
                self.run_application(r)
            else:
                status, headers, content = r.answer
                r.resp.start_response(f"{status} {HTTPStatus(status).phrase}", headers)
                r.resp.write(content)
                r.resp.close()
                self.answered(r)
        except Exception as exc:  # noqa: BLE001 - handled as gthread's handle() does
            self.failed(r, exc)
        finally:
            if r.started is not None:
                try:
                    self.cfg.post_request(self, r.req, r.environ or {}, r.resp)
                except Exception:
                    self.log.exception("Exception in post_request hook")

    def answered(self, r: InLoop) -> None:
        self.log.access(r.resp, r.req, r.environ, datetime.now() - r.started)
        deadline = time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT
        r.keepalive = not r.resp.should_close() and bool(
            r.conn.parser.finish_body(deadline=deadline)
        )

    def failed(self, r: InLoop, exc: Exception) -> None:
        """What gthread's handle() does with an error: the connection is closed after it."""
        r.broken = True
        r.keepalive = False
        if isinstance(exc, OSError):
            if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.debug("Ignoring connection error: %s", exc)
            else:
                self.log.exception("Socket error processing request.")
        elif isinstance(exc, (http.errors.NoMoreData, StopIteration)):
            self.log.debug("Closing connection. %s", exc)
        elif r.resp is not None and r.resp.headers_sent:
            # Writing an error answer after the start of one would corrupt it.
            self.log.exception("Error handling request")
        else:
            self.handle_error(r.req, r.conn.sock, r.conn.client, exc)
