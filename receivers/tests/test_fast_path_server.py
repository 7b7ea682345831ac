"""The fast path served by a real Granian, as docker-compose.yml runs it (PostgreSQL: the
server process must see the test database): kept-alive, pipelined, concurrent and slow
connections, chunked bodies, and the hostile clients of the hardening audit (issue 11).
"""

import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from receivers.models import Event
from receivers.tests.factories import make_source
from receivers.tests.webhooks import gridx_body, sign

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# Larger than any buffer a server might read in one go: the body arrives in several parts.
LARGE = 200_000


class NoRedis:
    url = "memory://"


@pytest.fixture
def server(tmp_path: Path):
    from tests.reliability.processes import HubProcesses

    web = HubProcesses(NoRedis(), tmp_path)
    # One process: whatever a hostile client can hold, it holds for every request.
    web.start_web("--workers", "1")
    yield web
    web.stop()
    print("--- web.log (tail)\n" + "\n".join((tmp_path / "web.log").read_text().splitlines()[-30:]))


def post(path: str, body: bytes, headers: dict) -> bytes:
    """One request, as bytes to send in one write."""
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def signed_post(source, secret: str, body: bytes) -> bytes:
    return post(f"/hooks/{source.slug}/", body, sign(source, body, secret).headers)


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict, bytes]]:
    """`count` HTTP answers with a Content-Length, read off one connection in order."""
    data, answers = b"", []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status_line, *lines = data[:end].decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
            length = int(headers["content-length"])
            if len(data) >= end + 4 + length:
                answers.append(
                    (int(status_line.split()[1]), headers, data[end + 4 : end + 4 + length])
                )
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    return answers


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict, bytes]:
    sock.sendall(request)
    (answer,) = read_answers(sock, 1)
    return answer


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_webhooks_are_stored_and_answered(server):
    source, (secret,) = make_source("gridx")
    ids = [f"kept-{n}" for n in range(5)]
    forged = gridx_body(id="forged")
    large = gridx_body(id="large", data={"padding": "x" * LARGE})
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        for event_id in ids:
            status, headers, content = exchange(
                sock, signed_post(source, secret, gridx_body(id=event_id))
            )
            assert (status, json.loads(content)) == (200, {"received": True, "duplicate": False})
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["content-type"] == "application/json"
        # The same event again, a forged one, an unknown source, a /hooks/ URL Django answers.
        status, _, content = exchange(sock, signed_post(source, secret, gridx_body(id="kept-0")))
        assert (status, json.loads(content)["duplicate"]) == (200, True)
        forgery = post(f"/hooks/{source.slug}/", forged, {"X-Signature": "sha512=00"})
        assert exchange(sock, forgery)[::2] == (401, b'{"error": "verification failed"}')
        unknown = post("/hooks/nobody/", forged, {})
        assert exchange(sock, unknown)[::2] == (404, b'{"error": "unknown source"}')
        assert exchange(sock, post("/hooks/!x/", forged, {}))[0] == 404
        # A body that arrives in several parts, on the same connection.
        status, _, content = exchange(sock, signed_post(source, secret, large))
        assert (status, json.loads(content)["duplicate"]) == (200, False)

    stored = Event.objects.filter(source=source)
    assert sorted(stored.values_list("external_id", flat=True)) == sorted([*ids, "large"])
    assert stored.get(external_id="kept-0").duplicates == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pipelined_webhooks_are_answered_in_order(server):
    source, (secret,) = make_source("gridx")
    first = gridx_body(id="pipe-0")
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        sock.sendall(signed_post(source, secret, first))
        assert read_answers(sock, 1)[0][0] == 200
        # Three requests in one write, the second a forgery: three answers, in order.
        sock.sendall(
            signed_post(source, secret, gridx_body(id="pipe-1"))
            + signed_post(source, "wrong", gridx_body(id="pipe-x"))
            + signed_post(source, secret, gridx_body(id="pipe-2"))
        )
        assert [answer[0] for answer in read_answers(sock, 3)] == [200, 401, 200]
    assert sorted(Event.objects.values_list("external_id", flat=True)) == [
        "pipe-0",
        "pipe-1",
        "pipe-2",
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_connections_lose_nothing(server):
    source, (secret,) = make_source("gridx")
    prefix = uuid.uuid4().hex[:8]
    failures = []

    def client(n: int) -> None:
        with socket.create_connection(("127.0.0.1", server.web_port), timeout=20) as sock:
            for i in range(25):
                body = gridx_body(id=f"{prefix}-{n}-{i}")
                status = exchange(sock, signed_post(source, secret, body))[0]
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    assert Event.objects.filter(external_id__startswith=prefix).count() == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_per_webhook_and_a_slow_sender(server):
    source, (secret,) = make_source("gridx")
    for n in range(3):
        body = gridx_body(id=f"own-connection-{n}")
        with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
            sock.sendall(signed_post(source, secret, body))
            assert read_answers(sock, 1)[0][0] == 200
    # The body comes a moment after the headers.
    slow = signed_post(source, secret, gridx_body(id="slow"))
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        sock.sendall(slow[:-10])
        time.sleep(0.3)
        sock.sendall(slow[-10:])
        assert read_answers(sock, 1)[0][0] == 200
    assert Event.objects.filter(source=source).count() == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_webhook_is_read_whole_and_one_too_large_is_refused(server):
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="chunked")
    head = post(f"/hooks/{source.slug}/", b"", sign(source, body, secret).headers)
    head = head.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:9], body[9:]))
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        status, _, content = exchange(sock, head + chunks + b"0\r\n\r\n")
        assert (status, json.loads(content)["duplicate"]) == (200, False)
    assert bytes(Event.objects.get(external_id="chunked").raw_body) == body
    # Chunked past HUB_MAX_BODY_BYTES (1 MiB, the server's default): refused.
    over = 2**20 + 1
    flood = b"%x\r\n%s\r\n0\r\n\r\n" % (over, b"x" * over)
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        assert exchange(sock, head + flood)[::2] == (
            413,
            b'{"error": "The body is larger than 1048576 bytes."}',
        )
    assert Event.objects.count() == 1


def test_a_bad_chunk_size_is_400_and_a_huge_one_does_not_hold_the_connection(server):
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="chunk-zz")
    head = post(f"/hooks/{source.slug}/", b"", sign(source, body, secret).headers)
    head = head.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        sock.sendall(head + b"zz\r\n" + body + b"\r\n0\r\n\r\n")
        assert read_status(sock) == 400
    # A chunk announced far larger than the limit, then a trickle: refused, not waited for.
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=20) as sock:
        sock.sendall(head + b"ffffffff\r\n" + body)
        status = read_status(sock)
        assert status in (408, 413)
        assert sock.recv(65536) == b"", "the connection stays open"
    assert time.monotonic() - started < 15
    assert not Event.objects.filter(external_id="chunk-zz").exists()


def read_status(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection without an answer"
        data += chunk
    return int(data.split(b" ", 2)[1])


def genuine_webhooks_answered_within(
    server, source, secret, count: int, seconds: float, spacing: float = 0.0
) -> None:
    """`count` genuine webhooks, each on its own connection, each answered 200 in time."""
    for n in range(count):
        time.sleep(spacing)
        body = gridx_body(id=f"genuine-{uuid.uuid4()}")
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.web_port), timeout=seconds) as sock:
            status = exchange(sock, signed_post(source, secret, body))[0]
        assert (status, time.monotonic() - started < seconds) == (200, True), n


def test_a_client_that_never_reads_does_not_hold_other_webhooks(server):
    """Issue 11, item 1: a client with a tiny receive buffer keeps sending POST /hooks/x/ and
    never reads its answers; webhooks on other connections are all answered within 1 s."""
    source, (secret,) = make_source("gridx")
    stop, stalled = threading.Event(), threading.Event()
    sent = []

    def never_reads() -> None:
        request = post("/hooks/x/", b'{"id": "1"}', {})
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.connect(("127.0.0.1", server.web_port))
            sock.settimeout(1.0)
            while not stop.is_set():
                try:
                    # One at a time, as a sender that does not pipeline would.
                    sock.sendall(request)
                    sent.append(1)
                    time.sleep(0.001)
                except TimeoutError:
                    # Every buffer between us and the server is full: the server stopped
                    # reading this connection (or stopped altogether). Keep pressing.
                    stalled.set()
                except OSError:
                    return

    hostile = threading.Thread(target=never_reads)
    hostile.start()
    try:
        # Until the buffers between it and the server are full: a server that writes its
        # answers in the way of others (the gunicorn worker of old) is then stuck.
        stalled.wait(12)
        genuine_webhooks_answered_within(server, source, secret, 20, 1.0, spacing=0.25)
    finally:
        stop.set()
        hostile.join(10)
    assert sum(sent) > 0
    assert Event.objects.filter(source=source).count() == 20


def test_slow_senders_do_not_hold_the_api_or_other_webhooks(server):
    """Issue 11, item 12: slowloris connections (bodies and headers a byte at a time) hold
    nothing the other requests need."""
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="slowloris")
    starts = [
        signed_post(source, secret, body)[:-5],
        post("/api/v1/sources/", b'{"slug": "x"}', {})[:-3],
        b"GET /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    ]
    slow = []
    try:
        for n in range(12):
            sock = socket.create_connection(("127.0.0.1", server.web_port), timeout=10)
            sock.sendall(starts[n % len(starts)])
            slow.append(sock)
        time.sleep(0.5)
        for sock in slow:
            sock.sendall(b"x")
        genuine_webhooks_answered_within(server, source, secret, 5, 1.0)
        with socket.create_connection(("127.0.0.1", server.web_port), timeout=1) as sock:
            sock.sendall(b"GET /api/v1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_status(sock) in (401, 403)
    finally:
        for sock in slow:
            sock.close()


def test_bodies_nested_too_deep_fail_alone_among_genuine_webhooks(server):
    """Issue 11, item 2: signed bodies nested about 970 deep, sent together with genuine ones
    so that they share batches: each deep one gets 400, every genuine one 200."""
    source, (secret,) = make_source("gridx")
    deep = b"[" * 970 + b"]" * 970
    results: list[tuple[str, int]] = []

    def sender(n: int) -> None:
        with socket.create_connection(("127.0.0.1", server.web_port), timeout=20) as sock:
            for i in range(12):
                kind = "deep" if i % 4 == 0 else "genuine"
                event_id = f"{kind}-{n}-{i}"
                body = gridx_body(id=event_id)
                if kind == "deep":
                    body = body[:-1] + b', "nested": ' + deep + b"}"
                results.append((kind, exchange(sock, signed_post(source, secret, body))[0]))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 96
    assert {status for kind, status in results if kind == "genuine"} == {200}
    assert {status for kind, status in results if kind == "deep"} == {400}
    assert Event.objects.filter(source=source).count() == 72
