"""Sending one webhook over a kept-alive HTTP/1.1 connection, one per target and worker thread.

The standard library's http.client, not urllib3: a worker's CPU bounds deliveries per second,
and urllib3's pool manager, URL parsing and header handling are work a delivery does not need
(bench/README.md has the figures). What urllib3 added is here: a connection the
target closed while idle is noticed before it is used, redirects are not followed, and only
a bounded excerpt of the answer is read.
"""

from __future__ import annotations

import functools
import http.client
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from .models import MAX_TIMEOUT_SECONDS
from .targets import TargetRefused, open_connection

EXCERPT_BYTES = 4096
MAX_RETRY_AFTER = 86400
TRANSIENT_CODES = {408, 429}
# Idle connections kept per worker thread; the oldest is closed beyond this.
MAX_CONNECTIONS = 50
# A reused connection that fails with one of these before any answer arrived was most likely
# closed by the target while idle: the request is sent once more on a new connection.
STALE_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
# What http.client refuses in a request target (control characters and spaces).
_UNSENDABLE_TARGET = re.compile("[\x00-\x20\x7f]")
_NOT_TOKEN = re.compile("[^!#$%&'*+.^_`|~0-9A-Za-z-]")
_LINE_BREAK = re.compile("[\r\n]")


@dataclass
class Answer:
    status: int
    content: bytes
    retry_after: str | None


class Timeout(Exception):
    pass


@functools.lru_cache(maxsize=1024)
def split_target(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, parts.hostname, port, target


@functools.cache
def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class CheckedConnection(http.client.HTTPConnection):
    """Connects to an address the target check approved in the same lookup (DNS rebinding
    cannot swap it); the Host header, and TLS's server name and certificate check, keep the
    URL's name."""

    def connect(self) -> None:
        self.sock = open_connection(self.host, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CheckedHTTPSConnection(http.client.HTTPSConnection, CheckedConnection):
    """HTTPSConnection.connect wraps the socket CheckedConnection.connect opened."""


@functools.lru_cache(maxsize=1024)
def request_head(host: str, port: int, default_port: int, target: str) -> bytes:
    """The request line and the headers http.client adds by itself (Host, Accept-Encoding)."""
    if _UNSENDABLE_TARGET.search(target):
        raise http.client.InvalidURL(f"URL can't contain control characters. {target!r}")
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    if port != default_port:
        host = f"{host}:{port}"
    return f"POST {target} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii")


def request_bytes(
    connection: http.client.HTTPConnection, target: str, body: bytes, headers: dict
) -> bytes:
    """What http.client's request() sends for a POST of `body`, as one buffer: written in one
    call, where request() writes the headers and the body apart (two packets, and two reads
    for the target). Header values are text; one given by the caller replaces the one
    http.client would add."""
    # Refused as http.client refuses them (a little stricter: a name must be a token, as
    # payloads.static_headers makes it), before anything is sent.
    if "" in headers or _NOT_TOKEN.search("".join(headers)):
        raise ValueError(f"Invalid header name in {list(headers)!r}")
    if _LINE_BREAK.search("".join(headers.values())):
        raise ValueError("Invalid header value: a line break")
    names = {name.lower() for name in headers}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if "accept-encoding" not in names:
        head += "Accept-Encoding: identity\r\n"
    if "content-length" not in names and "transfer-encoding" not in names:
        head += f"Content-Length: {len(body)}\r\n"
    first = (
        f"POST {target} HTTP/1.1\r\n".encode("ascii")
        if "host" in names
        else request_head(connection.host, connection.port, connection.default_port, target)
    )
    return first + head.encode("latin-1") + b"\r\n" + body


class Sender:
    """Not thread-safe: each worker thread has its own (http_client)."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def post(self, url: str, body: bytes, headers: dict, timeout: float) -> Answer:
        """Raises Timeout, or OSError / http.client.HTTPException for other failures."""
        scheme, host, port, target = split_target(url)
        key = (scheme, host, port)
        connection = self.connections.get(key)
        reused = connection is not None and self.usable(connection)
        if not reused:
            self.close(key)
            if len(self.connections) >= MAX_CONNECTIONS:
                self.close(next(iter(self.connections)))
            connection = self.connect(scheme, host, port, timeout)
            self.connections[key] = connection
        try:
            return self.exchange(connection, target, body, headers, timeout)
        except STALE_ERRORS:
            self.close(key)
            if not reused:
                raise
            connection = self.connect(scheme, host, port, timeout)
            self.connections[key] = connection
            try:
                return self.exchange(connection, target, body, headers, timeout)
            except BaseException:
                self.close(key)
                raise
        except BaseException:
            self.close(key)
            raise

    def exchange(
        self, connection: http.client.HTTPConnection, target: str, body, headers, timeout: float
    ) -> Answer:
        deadline = time.monotonic() + timeout
        # The request in one write; the answer read by http.client's own parser.
        data = request_bytes(connection, target, body, headers)
        try:
            if connection.sock is None:
                connection.connect()
            sock = connection.sock
            sock.settimeout(timeout)
            sock.sendall(data)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout()
            sock.settimeout(remaining)
            response = connection.response_class(sock, method="POST")
            try:
                response.begin()
                content = response.read(EXCERPT_BYTES)
                # Keep the connection only when the whole answer was read.
                if response.read(1) or response.will_close:
                    connection.close()
            finally:
                response.close()
        except TimeoutError as exc:
            raise Timeout() from exc
        return Answer(response.status, content, response.getheader("retry-after"))

    @staticmethod
    def connect(scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        if scheme == "https":
            return CheckedHTTPSConnection(host, port, timeout=timeout, context=tls_context())
        return CheckedConnection(host, port, timeout=timeout)

    @staticmethod
    def usable(connection: http.client.HTTPConnection) -> bool:
        """An idle kept-alive socket that is readable was closed (or misused) by the target."""
        sock = connection.sock
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self, key: tuple[str, str, int]) -> None:
        connection = self.connections.pop(key, None)
        if connection is not None:
            connection.close()

    def close_all(self) -> None:
        for key in list(self.connections):
            self.close(key)


# One attempt, as the delivery services see it ------------------------------------------------


@dataclass
class Result:
    status_code: int | None
    duration_ms: int
    excerpt: str
    error: str
    retry_after: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def network_failure(self) -> bool:
        return self.status_code is None

    @property
    def transient(self) -> bool:
        code = self.status_code
        return code is None or code in TRANSIENT_CODES or 500 <= code < 600


_local = threading.local()


def http_client() -> Sender:
    """One sender per worker thread, kept for its life, so connections to a subscriber stay
    alive between deliveries."""
    client = getattr(_local, "client", None)
    if client is None:
        client = Sender()
        _local.client = client
    return client


def post(
    client: Sender,
    url: str,
    body: bytes,
    headers: dict,
    now: datetime,
    timeout: float = MAX_TIMEOUT_SECONDS,
) -> Result:
    started = time.perf_counter()
    try:
        answer = client.post(url, body, headers, timeout)
    except Timeout:
        return Result(None, elapsed_ms(started), "", "timed out")
    except TargetRefused as exc:
        return Result(None, elapsed_ms(started), "", f"refused: {exc}"[:500])
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return Result(None, elapsed_ms(started), "", f"{exc.__class__.__name__}: {exc}"[:500])
    error = "redirects are not followed" if 300 <= answer.status < 400 else ""
    return Result(
        answer.status,
        elapsed_ms(started),
        answer.content.decode("utf-8", "replace"),
        error,
        retry_after_seconds(answer.retry_after, now),
    )


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def retry_after_seconds(value: str | None, now: datetime) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            seconds = int((parsedate_to_datetime(value) - now).total_seconds())
        except (TypeError, ValueError):
            return None
    return max(1, min(seconds, MAX_RETRY_AFTER))
