"""receivers.worker: gthread, with whole webhook requests answered in batches by the event loop.

Three layers: which requests the loop may take (`whole_request`, pure), how requests that
arrived together are answered (`FastReceive.answer_together`, in-process, every database),
and a real gunicorn running the worker (PostgreSQL: the server process must see the test
database), over kept-alive, pipelined and concurrent connections.
"""

import json
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from hub.wsgi import application
from receivers.group_commit import writer
from receivers.lookup import cached_source, forget_sources
from receivers.models import Event, Source
from receivers.tests.factories import make_source
from receivers.tests.webhooks import gridx_body, sign
from receivers.worker import PEEK_BYTES, whole_request

BODY = b'{"id": "1"}'


def raw(
    body: bytes = BODY,
    start: bytes = b"POST /hooks/s/ HTTP/1.1",
    headers: bytes | None = None,
    cut: int = 0,
) -> bytes:
    if headers is None:
        headers = b"Host: h\r\nContent-Length: %d\r\n" % len(body)
    data = start + b"\r\n" + headers + b"\r\n" + body
    return data[: len(data) - cut]


@pytest.mark.parametrize(
    "data",
    [
        raw(),
        raw(body=b""),
        raw(headers=b"Host: h\r\nCONTENT-LENGTH:   11 \r\nX-Signature: a\r\n"),
        # A second request behind the first (pipelining) is left in the buffer for the next.
        raw() + raw(),
        raw() + b"GET / HTTP",
    ],
)
def test_a_whole_plain_webhook_request_is_taken_by_the_loop(data):
    assert whole_request(data)


@pytest.mark.parametrize(
    "data",
    [
        # Not all there yet: reading it would wait for the client.
        raw(cut=1),
        raw(cut=len(BODY) + 2),
        b"POST /hooks/s/ HTTP/1.1\r\nHost: h\r\n",
        b"",
        # Not a webhook.
        raw(start=b"GET /hooks/s/ HTTP/1.1"),
        raw(start=b"POST /api/v1/sources/ HTTP/1.1"),
        raw(start=b"POST /hooksx/s/ HTTP/1.1"),
        # Framed in ways only gunicorn's parser should judge.
        raw(headers=b"Host: h\r\nTransfer-Encoding: chunked\r\n", body=b"b\r\n" + BODY),
        raw(headers=b"Host: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n"),
        raw(headers=b"Host: h\r\nContent-Length: 11\r\nContent-Length: 11\r\n"),
        raw(headers=b"Host: h\r\n"),
        raw(headers=b"Host: h\r\nContent-Length: -11\r\n"),
        raw(headers=b"Host: h\r\nContent-Length: 1e1\r\n"),
        raw(headers=b"Host: h\r\nContent-Length:\r\n"),
    ],
)
def test_anything_else_is_left_to_the_thread_pool(data):
    assert not whole_request(data)


# answer_together, in-process ------------------------------------------------------------


def environ_for(source, secret: str, body: bytes) -> dict:
    signed = sign(source, body, secret)
    request = RequestFactory().post(
        f"/hooks/{source.slug}/", data=body, content_type="application/json", headers=signed.headers
    )
    return request.environ


def statuses(answers) -> list[int]:
    return [answer[0] for answer in answers]


@pytest.mark.django_db(transaction=True)
def test_requests_that_arrived_together_are_answered_in_order_after_one_write(monkeypatch):
    forget_sources()
    source, (secret,) = make_source("gridx")
    Event.objects.create(source=source, external_id="seen", type="t", raw_body=b"{}")
    writes = []
    write = writer.write
    monkeypatch.setattr(writer, "write", lambda events: writes.append(len(events)) or write(events))
    environs = [
        environ_for(source, secret, gridx_body(id="new-1")),
        environ_for(source, "wrong secret", gridx_body(id="forged")),
        environ_for(source, secret, gridx_body(id="seen")),
        environ_for(source, secret, gridx_body(id="twice")),
        environ_for(source, secret, gridx_body(id="twice")),
        RequestFactory().post("/hooks/!x/", b"{}", content_type="application/json").environ,
    ]

    answers = application.answer_together(environs)

    assert writes == [4]
    assert statuses(answers[:5]) == [200, 401, 200, 200, 200]
    assert [json.loads(a[2]).get("duplicate") for a in answers[:5]] == [
        False,
        None,
        True,
        False,
        True,
    ]
    assert answers[5] is None  # the worker hands it to the whole application
    stored = dict(Event.objects.values_list("external_id", "duplicates"))
    assert stored == {"seen": 1, "new-1": 0, "twice": 1}


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_answers_every_request_of_the_batch_503(monkeypatch):
    forget_sources()
    source, (secret,) = make_source("gridx")
    monkeypatch.setattr(
        writer, "write", lambda events: (_ for _ in ()).throw(OperationalError("gone"))
    )
    bodies = [gridx_body(id=f"lost-{n}") for n in range(3)]

    answers = application.answer_together([environ_for(source, secret, b) for b in bodies])

    assert statuses(answers) == [503, 503, 503]
    assert all(("Retry-After", "5") in a[1] or dict(a[1]).get("Retry-After") for a in answers)
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_source_was_just_deleted_fails_alone():
    forget_sources()
    kept, (kept_secret,) = make_source("gridx")
    gone, (gone_secret,) = make_source("gridx")
    cached_source(gone.slug)  # still cached when its row is deleted
    Source.objects.filter(pk=gone.pk).delete()

    answers = application.answer_together(
        [
            environ_for(gone, gone_secret, gridx_body(id="orphan")),
            environ_for(kept, kept_secret, gridx_body(id="kept")),
        ]
    )

    assert statuses(answers) == [404, 200]
    assert list(Event.objects.values_list("external_id", flat=True)) == ["kept"]


# A real gunicorn with the worker -------------------------------------------------------

HOOK_LOG = """
import threading

def post_request(worker, req, environ, resp):
    with open({path!r}, "a") as log:
        log.write(f"{{req.path}} {{threading.current_thread() is threading.main_thread()}}\\n")
"""


class NoRedis:
    url = "memory://"


@pytest.fixture
def gunicorn(tmp_path: Path):
    from tests.reliability.processes import HubProcesses

    web = HubProcesses(NoRedis(), tmp_path)
    config = tmp_path / "gunicorn_conf.py"
    web.loop_log = tmp_path / "threads.txt"
    config.write_text(HOOK_LOG.format(path=str(web.loop_log)))
    web.start_web("-w", "1", "--threads", "2", "-c", str(config))
    yield web
    web.stop()
    print("--- web.log (tail)\n" + "\n".join((tmp_path / "web.log").read_text().splitlines()[-30:]))


def answered_in_loop(web) -> list[bool]:
    return [line.endswith("True") for line in web.loop_log.read_text().splitlines()]


def post(path: str, body: bytes, headers: dict) -> bytes:
    """One request as a single write: the loop takes a request only once it has all of it.
    (http.client sends the body after the headers, which may reach the worker apart.)"""
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
def test_webhooks_are_stored_and_answered_by_the_loop(gunicorn):
    source, (secret,) = make_source("gridx")
    ids = [f"kept-{n}" for n in range(5)]
    forged = gridx_body(id="forged")
    large = gridx_body(id="large", data={"padding": "x" * PEEK_BYTES})
    with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
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
        # Larger than the loop looks at: the thread pool reads it, on the same connection.
        status, _, content = exchange(sock, signed_post(source, secret, large))
        assert (status, json.loads(content)["duplicate"]) == (200, False)

    stored = Event.objects.filter(source=source)
    assert sorted(stored.values_list("external_id", flat=True)) == sorted([*ids, "large"])
    assert stored.get(external_id="kept-0").duplicates == 1
    # Every request that arrived whole is the loop's, the first of the connection too; the
    # large one went to the pool.
    assert answered_in_loop(gunicorn) == [True] * 9 + [False]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_pipelined_webhooks_are_answered_in_order(gunicorn):
    source, (secret,) = make_source("gridx")
    first = gridx_body(id="pipe-0")
    with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
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
def test_concurrent_connections_lose_nothing(gunicorn):
    source, (secret,) = make_source("gridx")
    prefix = uuid.uuid4().hex[:8]
    failures = []

    def client(n: int) -> None:
        with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=20) as sock:
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
    assert answered_in_loop(gunicorn) == [True] * 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_per_webhook_and_a_slow_sender(gunicorn):
    source, (secret,) = make_source("gridx")
    for n in range(3):
        body = gridx_body(id=f"own-connection-{n}")
        with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
            sock.sendall(signed_post(source, secret, body))
            assert read_answers(sock, 1)[0][0] == 200
    # The body comes a moment after the headers: the loop does not wait, a pool thread does.
    slow = signed_post(source, secret, gridx_body(id="slow"))
    with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
        sock.sendall(slow[:-10])
        time.sleep(0.3)
        sock.sendall(slow[-10:])
        assert read_answers(sock, 1)[0][0] == 200
    assert Event.objects.filter(source=source).count() == 4
    assert answered_in_loop(gunicorn) == [True, True, True, False]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_chunked_webhook_is_read_whole_and_one_too_large_is_refused(gunicorn):
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="chunked")
    head = post(f"/hooks/{source.slug}/", b"", sign(source, body, secret).headers)
    head = head.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:9], body[9:]))
    with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
        status, _, content = exchange(sock, head + chunks + b"0\r\n\r\n")
        assert (status, json.loads(content)["duplicate"]) == (200, False)
    assert bytes(Event.objects.get(external_id="chunked").raw_body) == body
    # Chunked past HUB_MAX_BODY_BYTES (1 MiB, the server's default): refused.
    over = 2**20 + 1
    flood = b"%x\r\n%s\r\n0\r\n\r\n" % (over, b"x" * over)
    with socket.create_connection(("127.0.0.1", gunicorn.web_port), timeout=10) as sock:
        assert exchange(sock, head + flood)[::2] == (
            413,
            b'{"error": "The body is larger than 1048576 bytes."}',
        )
    assert Event.objects.count() == 1
