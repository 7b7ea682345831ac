"""subscriptions.sender.Sender against a real local HTTP/1.1 server that keeps connections alive.

The shared TestReceiver speaks HTTP/1.0 (one request per connection), so these tests use a
small keep-alive server of their own that counts the TCP connections it accepts and closes.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from subscriptions import sender as sender_module
from subscriptions.sender import EXCERPT_BYTES, STALE_ERRORS, Sender, Timeout, split_target

WAIT = 10.0


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection after answering, without a "Connection: close" header.
    then_close: bool = False
    # Read the request, then close the connection without answering.
    drop: bool = False
    # Never answer (until the test ends).
    hang: bool = False


@dataclass
class Seen:
    connection: int
    path: str
    headers: dict[str, str]
    body: bytes


class KeepAliveTarget:
    """Answers POSTs as scripted (`replies` in order, then `default`), keeping connections open."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.default = Reply()
        self.requests: list[Seen] = []
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.release = threading.Event()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with target.changed:
                    target.accepted += 1
                    self.number = target.accepted
                    target.changed.notify_all()

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with target.changed:
                    target.requests.append(
                        Seen(
                            self.number,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                    reply = target.replies.pop(0) if target.replies else target.default
                    target.changed.notify_all()
                if reply.hang:
                    target.release.wait(WAIT * 3)
                    self.close_connection = True
                    return
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                self.wfile.flush()
                if reply.then_close:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def shutdown_request(self, request):
                super().shutdown_request(request)
                with target.changed:
                    target.closed += 1
                    target.changed.notify_all()

            def handle_error(self, request, client_address):
                pass  # a client that went away mid-answer is part of these tests

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/hook"

    @property
    def key(self) -> tuple[str, str, int]:
        return ("http", "127.0.0.1", self.port)

    def wait_until(self, condition, what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: condition(self), WAIT):
                raise AssertionError(f"timed out waiting for {what}")

    def __enter__(self) -> KeepAliveTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target():
    with KeepAliveTarget() as running:
        yield running


@pytest.fixture
def sender():
    client = Sender()
    yield client
    client.close_all()


def post(sender: Sender, url: str, body: bytes = b"{}", timeout: float = 5.0):
    return sender.post(url, body, {"content-type": "application/json"}, timeout)


def test_two_posts_reuse_one_connection(target, sender):
    first = sender.post(target.url, b'{"n": 1}', {"x-test": "one"}, 5.0)
    second = sender.post(target.url, b'{"n": 2}', {"x-test": "two"}, 5.0)
    assert (first.status, first.content, first.retry_after) == (200, b"ok", None)
    assert (second.status, second.content) == (200, b"ok")
    assert target.accepted == 1
    assert [(r.connection, r.path, r.body) for r in target.requests] == [
        (1, "/hook", b'{"n": 1}'),
        (1, "/hook", b'{"n": 2}'),
    ]
    assert [r.headers["x-test"] for r in target.requests] == ["one", "two"]
    assert list(sender.connections) == [target.key]


def test_a_connection_the_target_closed_while_idle_is_replaced(target, sender):
    target.replies = [Reply(then_close=True)]
    assert post(sender, target.url).status == 200
    target.wait_until(lambda t: t.closed == 1, "the target to close the connection")
    idle = sender.connections[target.key]
    # The target's FIN makes the idle socket readable: the sender must notice it.
    assert select.select([idle.sock], [], [], WAIT)[0]
    assert not Sender.usable(idle)
    answer = post(sender, target.url)
    assert (answer.status, answer.content) == (200, b"ok")
    assert target.accepted == 2
    assert [r.connection for r in target.requests] == [1, 2]


def test_a_reused_connection_dropped_before_answering_is_retried_once(target, sender):
    # The connection is still open when the second post checks it; the target reads the
    # request and closes without answering: the request goes again on a new connection.
    target.replies = [Reply(), Reply(drop=True), Reply(body=b"second try")]
    assert post(sender, target.url).status == 200
    answer = post(sender, target.url)
    assert (answer.status, answer.content) == (200, b"second try")
    assert [r.connection for r in target.requests] == [1, 1, 2]
    assert target.accepted == 2


def test_a_fresh_connection_dropped_before_answering_is_not_retried(target, sender):
    target.replies = [Reply(drop=True)]
    with pytest.raises(STALE_ERRORS):
        post(sender, target.url)
    assert len(target.requests) == 1
    assert target.accepted == 1
    assert sender.connections == {}


def test_a_long_answer_is_cut_to_the_excerpt_and_its_connection_dropped(target, sender):
    long_body = bytes(range(256)) * 20  # 5120 bytes
    target.replies = [Reply(body=long_body)]
    answer = post(sender, target.url)
    assert answer.status == 200
    assert len(answer.content) == EXCERPT_BYTES == 4096
    assert answer.content == long_body[:EXCERPT_BYTES]
    assert post(sender, target.url).content == b"ok"
    assert target.accepted == 2
    assert [r.connection for r in target.requests] == [1, 2]


def test_an_answer_of_exactly_the_excerpt_keeps_its_connection(target, sender):
    body = b"y" * EXCERPT_BYTES
    target.replies = [Reply(body=body)]
    assert post(sender, target.url).content == body
    assert post(sender, target.url).content == b"ok"
    assert target.accepted == 1


def test_redirects_are_returned_not_followed(target, sender):
    target.replies = [Reply(status=302, body=b"", headers={"Location": f"{target.base}/elsewhere"})]
    answer = post(sender, target.url)
    assert answer.status == 302
    assert answer.content == b""
    assert [r.path for r in target.requests] == ["/hook"]
    # The connection stays usable for the next delivery.
    assert post(sender, target.url).status == 200
    assert [r.path for r in target.requests] == ["/hook", "/hook"]
    assert target.accepted == 1


def test_a_target_that_never_answers_times_out(target, sender):
    target.replies = [Reply(hang=True)]
    started = time.monotonic()
    with pytest.raises(Timeout):
        post(sender, target.url, timeout=0.5)
    assert time.monotonic() - started < WAIT  # sanity only: it did not wait for the target
    assert len(target.requests) == 1
    assert sender.connections == {}


def test_connection_refused_raises_oserror(sender):
    # A bound socket that does not listen keeps the port taken and refuses connections.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        with pytest.raises(OSError) as raised:
            post(sender, f"http://127.0.0.1:{port}/hook", timeout=2.0)
    assert not isinstance(raised.value, TimeoutError)
    assert sender.connections == {}


def test_retry_after_is_returned(target, sender):
    target.replies = [Reply(status=503, body=b"busy", headers={"Retry-After": "120"})]
    answer = post(sender, target.url)
    assert (answer.status, answer.content, answer.retry_after) == (503, b"busy", "120")
    assert post(sender, target.url).retry_after is None


def test_split_target():
    assert split_target("https://example.com/hook?a=1&b=2") == (
        "https",
        "example.com",
        443,
        "/hook?a=1&b=2",
    )
    assert split_target("HTTPS://Example.com:8443") == ("https", "example.com", 8443, "/")
    assert split_target("http://127.0.0.1/x") == ("http", "127.0.0.1", 80, "/x")


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "file:///etc/passwd", "mailto:a@example.com", "http:///x"]
)
def test_split_target_refuses_anything_but_http(url):
    with pytest.raises(ValueError):
        split_target(url)


def test_post_refuses_a_non_http_url_without_connecting(sender):
    with pytest.raises(ValueError):
        post(sender, "ftp://127.0.0.1/hook")
    assert sender.connections == {}


def test_at_most_max_connections_are_kept(monkeypatch, sender):
    monkeypatch.setattr(sender_module, "MAX_CONNECTIONS", 2)
    with KeepAliveTarget() as one, KeepAliveTarget() as two, KeepAliveTarget() as three:
        for running in (one, two, three):
            assert post(sender, running.url).status == 200
            assert len(sender.connections) <= 2
        assert list(sender.connections) == [two.key, three.key]
        # The oldest was closed on our side: its target sees the connection end.
        one.wait_until(lambda t: t.closed == 1, "the oldest connection to be closed")
        assert post(sender, one.url).status == 200
        assert one.accepted == 2
        assert len(sender.connections) == 2
        assert list(sender.connections) == [three.key, one.key]


# The request is written in one buffer, as http.client would have written it ---------------


def test_the_request_carries_the_headers_http_client_would_add(target, sender):
    sender.post(target.url, b'{"n": 1}', {"content-type": "application/json"}, 5.0)
    (seen,) = target.requests
    assert seen.headers == {
        "content-type": "application/json",
        "host": f"127.0.0.1:{target.port}",
        "accept-encoding": "identity",
        "content-length": "8",
    }
    assert seen.body == b'{"n": 1}'


def test_request_bytes_is_one_buffer_with_a_default_port_host():
    connection = http.client.HTTPConnection("example.com", 80)
    data = sender_module.request_bytes(connection, "/a?b=1", b"{}", {"x-one": "1"})
    assert data == (
        b"POST /a?b=1 HTTP/1.1\r\nHost: example.com\r\nx-one: 1\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}"
    )


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "one\r\nx-injected: two"}, {"x-a": "one\ntwo"}, {"x a": "1"}, {"x:a": "1"}, {"": "1"}],
)
def test_a_header_http_client_would_refuse_is_refused(target, sender, headers):
    with pytest.raises(ValueError):
        sender.post(target.url, b"{}", headers, 5.0)
    assert target.requests == []


def test_a_target_with_control_characters_is_refused(sender):
    with pytest.raises(http.client.InvalidURL):
        sender.post("http://127.0.0.1:9/a b", b"{}", {}, 5.0)
