"""The fast path (receivers.fastpath, HUB_FAST_PATH) answers exactly like the Django view.

Each request is sent twice: to the fast path's ASGI application in this process, with a scope
made as an ASGI server makes it, and through the Django test client (receive_view behind Django's
middleware). The fast path's writer thread stores with its own database connection, so these
tests run in autocommit (transaction=True): it must see the sources the test created.
"""

import asyncio
import json
import sys
from dataclasses import dataclass, field
from unittest import mock
from urllib.parse import unquote, urlencode, urlsplit

import pytest
from django.core.asgi import get_asgi_application
from django.db import OperationalError
from django.test import Client, override_settings

from receivers.fastpath import FastPath
from receivers.fastpath.batches import SERVER_ERROR
from receivers.lookup import forget_sources
from receivers.models import Event
from receivers.tests.factories import make_source
from receivers.tests.webhooks import GRIDX_EVENT, gridx_body, sign
from receivers.unavailable import UNAVAILABLE_BODY

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_cache"),
]


@pytest.fixture(scope="module")
def application():
    app = FastPath(get_asgi_application())
    yield app
    # The writer closes its database connection as it ends: the test database can go.
    app.writer.stop()
    if app.writer.thread is not None:
        app.writer.thread.join(10)


@pytest.fixture
def empty_cache(application):
    global served
    served = application
    forget_sources()
    yield
    forget_sources()


served: FastPath | None = None


@dataclass
class Answer:
    status: int
    headers: dict = field(default_factory=dict)
    content: bytes = b""

    def json(self):
        return json.loads(self.content)


def scope_for(method: str, path: str, headers: dict) -> dict:
    """What an ASGI server passes: the path percent-decoded, headers as lowercase bytes."""
    split = urlsplit(path)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.upper(),
        "scheme": "http",
        "path": unquote(split.path),
        "raw_path": split.path.encode(),
        "root_path": "",
        "query_string": split.query.encode(),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def call(app, scope: dict, chunks: list[bytes], ends: bool = True) -> Answer:
    async def run() -> Answer:
        pending = [
            {"type": "http.request", "body": chunk, "more_body": not ends or n < len(chunks) - 1}
            for n, chunk in enumerate(chunks)
        ]
        answer = Answer(0)

        async def receive():
            if pending:
                return pending.pop(0)
            await asyncio.Event().wait()  # a connection that stays open

        async def send(message):
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            else:
                answer.content += message.get("body", b"")

        await app(scope, receive, send)
        return answer

    return asyncio.run(run())


def fast(method: str, path: str, body: bytes = b"", headers=None, chunks=None, **extra) -> Answer:
    sent = {"host": "testserver"}
    if method == "post":
        sent.update({"content-type": "application/json", "content-length": str(len(body))})
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    if "CONTENT_LENGTH" in extra:
        sent["content-length"] = extra.pop("CONTENT_LENGTH")
    assert not extra, extra
    return call(served, scope_for(method, path, sent), chunks or [body])


def django(method: str, path: str, body: bytes = b"", headers=None, **extra) -> Answer:
    client = Client(raise_request_exception=False)
    if method == "post":
        response = client.post(
            path, data=body, content_type="application/json", headers=headers, **extra
        )
    else:
        response = client.generic(method.upper(), path, headers=headers, **extra)
    return Answer(
        response.status_code,
        {name.lower(): value for name, value in response.items()},
        response.content,
    )


def signed_request(source, secret: str, body: bytes, rest: str = "") -> tuple[str, dict]:
    signed = sign(source, body, secret)
    path = f"/hooks/{source.slug}/{rest}"
    if signed.query:
        path += "?" + urlencode(signed.query)
    return path, signed.headers


def assert_same(ours: Answer, theirs: Answer, *headers: str) -> None:
    assert ours.status == theirs.status
    assert ours.content == theirs.content
    for name in ("content-type", *headers):
        assert ours.headers.get(name) == theirs.headers.get(name), name


def test_signed_gridx_event_is_stored_once_and_answered_like_django():
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="fast-1")
    path, headers = signed_request(source, secret, body)

    first = fast("post", path, body, headers)
    assert first.status == 200
    assert first.json() == {"received": True, "duplicate": False}
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(first.content))
    event = Event.objects.get()
    assert (event.source_id, event.external_id, event.type) == (
        source.pk,
        "fast-1",
        "appliance/online",
    )
    assert bytes(event.raw_body) == body

    # The same event again, through both paths: a duplicate, answered the same way.
    again = fast("post", path, body, headers)
    through_django = django("post", path, body, headers)
    assert again.status == 200
    assert again.json() == {"received": True, "duplicate": True}
    assert_same(again, through_django)
    event.refresh_from_db()
    assert Event.objects.count() == 1
    assert event.duplicates == 2


SECURITY_HEADERS = (
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "x-frame-options",
)


def test_answers_carry_the_security_headers_django_adds():
    source, (secret,) = make_source("gridx")
    path, headers = signed_request(source, secret, gridx_body(id="sec-1"))
    ours = fast("post", path, gridx_body(id="sec-1"), headers)
    theirs = django("post", path, gridx_body(id="sec-1"), headers)
    for name in SECURITY_HEADERS:
        assert theirs.headers.get(name), name
        assert ours.headers.get(name) == theirs.headers[name], name
    refused = fast("post", f"/hooks/{source.slug}/", gridx_body(id="sec-2"), {"X-Signature": "x"})
    assert refused.status == 401
    assert refused.headers["x-content-type-options"] == "nosniff"
    with mock.patch("receivers.services.cached_source", side_effect=OperationalError("refused")):
        unavailable = fast("post", path, gridx_body(id="sec-1"), headers)
    assert unavailable.status == 503
    assert unavailable.headers["x-frame-options"] == theirs.headers["x-frame-options"]


def test_first_answers_match_django_for_a_new_event():
    source, (secret,) = make_source("gridx")
    one, two = gridx_body(id="via-fast"), gridx_body(id="via-django")
    path, headers = signed_request(source, secret, one)
    ours = fast("post", path, one, headers)
    path, headers = signed_request(source, secret, two)
    theirs = django("post", path, two, headers)
    assert_same(ours, theirs)
    assert sorted(Event.objects.values_list("external_id", flat=True)) == ["via-django", "via-fast"]


def test_empty_success_body_provider_matches_django():
    # eDRV expects an empty 200.
    source, (secret,) = make_source("edrv")
    body = json.dumps({"_id": "e-1", "type": "session.started", "data": {}}).encode()
    path, headers = signed_request(source, secret, body)
    ours = fast("post", path, body, headers)
    theirs = django("post", path, body, headers)
    assert (ours.status, ours.content) == (200, b"")
    assert "content-type" not in ours.headers
    assert ours.headers["content-length"] == "0"
    # Only the status and the (empty) body: for an empty body the Django view still sends
    # its default Content-Type (text/html), the fast path sends none.
    assert (theirs.status, theirs.content) == (200, b"")
    assert Event.objects.get().duplicates == 1


def test_wrong_signature_is_401_like_django():
    source, _ = make_source("gridx")
    body = gridx_body()
    path, headers = signed_request(source, "not-the-secret", body)
    ours = fast("post", path, body, headers)
    theirs = django("post", path, body, headers)
    assert ours.status == 401
    assert ours.json() == {"error": "verification failed"}
    assert_same(ours, theirs)
    assert not Event.objects.exists()


def test_unknown_slug_is_404_like_django():
    ours = fast("post", "/hooks/nobody-here/", gridx_body())
    theirs = django("post", "/hooks/nobody-here/", gridx_body())
    assert ours.status == 404
    assert ours.json() == {"error": "unknown source"}
    assert_same(ours, theirs)


def test_bad_json_is_400_like_django():
    source, (secret,) = make_source("gridx")
    body = b"id=1&type=ping"
    path, headers = signed_request(source, secret, body)
    ours = fast("post", path, body, headers)
    theirs = django("post", path, body, headers)
    assert ours.status == 400
    assert ours.json() == {"error": "The body is not valid JSON."}
    assert_same(ours, theirs)
    assert not Event.objects.exists()


@override_settings(HUB_MAX_BODY_BYTES=200)
def test_oversized_body_is_413_like_django():
    source, (secret,) = make_source("gridx")
    body = gridx_body(data={"padding": "x" * 300})
    path, headers = signed_request(source, secret, body)
    ours = fast("post", path, body, headers)
    theirs = django("post", path, body, headers)
    assert ours.status == 413
    assert ours.json() == {"error": "The body is larger than 200 bytes."}
    assert_same(ours, theirs)
    assert not Event.objects.exists()


def test_invalid_content_length_is_400_like_django():
    source, (secret,) = make_source("gridx")
    body = gridx_body()
    path, headers = signed_request(source, secret, body)
    ours = fast("post", path, body, headers, CONTENT_LENGTH="twelve")
    theirs = django("post", path, body, headers, CONTENT_LENGTH="twelve")
    assert ours.status == 400
    assert_same(ours, theirs)
    assert not Event.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_are_405_with_allow_like_django(method):
    source, _ = make_source("gridx")
    ours = fast(method, f"/hooks/{source.slug}/")
    theirs = django(method, f"/hooks/{source.slug}/")
    assert ours.status == 405
    assert ours.headers["allow"] == "POST"
    assert_same(ours, theirs, "allow")


@pytest.mark.parametrize("rest", ["", "events/appliance/online"])
def test_path_without_slash_and_with_a_rest_like_django(rest):
    source, (secret,) = make_source("gridx")
    body = json.dumps({**GRIDX_EVENT, "id": f"form-{bool(rest)}"}).encode()
    signed = sign(source, body, secret)
    path = f"/hooks/{source.slug}" + (f"/{rest}" if rest else "")
    ours = fast("post", path, body, signed.headers)
    theirs = django("post", path, body, signed.headers)
    if rest:
        # The type comes from the path: stored once, the second is a duplicate.
        assert ours.status == 200
        assert Event.objects.get().type == "appliance/online"
        assert ours.json() == {"received": True, "duplicate": False}
        assert theirs.json() == {"received": True, "duplicate": True}
        assert ours.headers["content-type"] == theirs.headers["content-type"]
    else:
        # No type in the body and none in the path.
        assert ours.status == 400
        assert_same(ours, theirs)
        assert not Event.objects.exists()


def test_no_slash_path_stores_the_event():
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="no-slash")
    ours = fast("post", f"/hooks/{source.slug}", body, sign(source, body, secret).headers)
    assert ours.status == 200
    assert Event.objects.get().external_id == "no-slash"


def test_database_outage_is_503_with_retry_after_like_django():
    source, (secret,) = make_source("gridx")
    body = gridx_body()
    path, headers = signed_request(source, secret, body)
    with mock.patch(
        "receivers.lookup.find_source", side_effect=OperationalError("connection refused")
    ):
        ours = fast("post", path, body, headers)
        theirs = django("post", path, body, headers)
    assert ours.status == 503
    assert int(ours.headers["retry-after"]) > 0
    assert ours.content == UNAVAILABLE_BODY
    assert_same(ours, theirs, "retry-after", *SECURITY_HEADERS)
    assert not Event.objects.exists()


def test_unexpected_error_is_a_json_500_without_a_traceback(caplog):
    source, (secret,) = make_source("gridx")
    body = gridx_body()
    path, headers = signed_request(source, secret, body)
    with mock.patch("receivers.lookup.find_source", side_effect=RuntimeError("a bug in the hub")):
        ours = fast("post", path, body, headers)
    assert ours.status == 500
    assert ours.headers["content-type"] == "application/json"
    assert ours.content == SERVER_ERROR
    assert ours.json() == {"error": "The hub failed to handle this request."}
    assert b"Traceback" not in ours.content and b"a bug in the hub" not in ours.content
    assert ours.headers["x-content-type-options"] == "nosniff"
    # The bug is logged, with its traceback, for the operator.
    logged = [r for r in caplog.records if r.name == "receivers.fastpath.batches"]
    assert logged and logged[0].exc_info[0] is RuntimeError
    assert not Event.objects.exists()


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1/events/", "/hooksx/abc/", "/admin/login/"])
def test_other_paths_fall_through_to_django(path):
    ours = fast("get", path)
    theirs = django("get", path)
    assert ours.status == theirs.status
    assert ours.status in (200, 401, 403, 404)
    if path.startswith("/api/"):
        assert ours.status in (401, 403)
        assert ours.content == theirs.content


def test_a_path_ending_in_a_newline_is_not_a_receive_url():
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="newline-1")
    path, headers = signed_request(source, secret, body, rest="events/x%0A")
    assert fast("post", path, body, headers).status == django("post", path, body, headers).status
    assert not Event.objects.filter(external_id="newline-1").exists()


def test_the_rest_of_the_path_is_decoded_as_utf8_like_django():
    source, (secret,) = make_source("gridx")
    body = json.dumps({**GRIDX_EVENT, "id": "utf8-1"}).encode()  # no type: the path gives it
    path, headers = signed_request(source, secret, body, rest="events/%C3%A9v")
    assert fast("post", path, body, headers).status == 200
    assert Event.objects.get(external_id="utf8-1").type == "év"


def test_a_host_outside_allowed_hosts_is_refused_and_nothing_is_stored():
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="evil-host")
    path, headers = signed_request(source, secret, body)
    answer = fast("post", path, body, {**headers, "Host": "evil.example"})
    assert answer.status == 400
    assert not Event.objects.filter(external_id="evil-host").exists()


def test_a_chunked_body_is_read_to_its_end():
    # What a server passes for a chunked body: no Content-Length, the body in several messages.
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="chunked-1")
    path, headers = signed_request(source, secret, body)
    sent = {**headers, "content-length": None}
    scope = scope_for("post", path, {k: v for k, v in sent.items() if v is not None})
    answer = call(served, scope, [body[:7], body[7:20], body[20:]])
    assert answer.status == 200
    assert bytes(Event.objects.get(external_id="chunked-1").raw_body) == body


@override_settings(HUB_MAX_BODY_BYTES=200)
def test_a_chunked_body_past_the_limit_is_413_and_the_connection_closes():
    source, (secret,) = make_source("gridx")
    body = gridx_body(data={"padding": "x" * 300})
    path, headers = signed_request(source, secret, body)
    scope = scope_for("post", path, {"host": "testserver", **headers})
    answer = call(served, scope, [body[:150], body[150:]])
    assert answer.status == 413
    assert answer.json() == {"error": "The body is larger than 200 bytes."}
    assert answer.headers["connection"] == "close"
    assert not Event.objects.exists()


def test_a_body_that_never_ends_is_408_and_the_connection_closes(monkeypatch):
    monkeypatch.setattr("receivers.fastpath.app.BODY_SECONDS", 0.2)
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="slow-1")
    path, headers = signed_request(source, secret, body)
    scope = scope_for("post", path, {"host": "testserver", **headers})
    # Part of the body, then nothing more, as from a sender that stalls (or a chunk size
    # far larger than what it sends).
    answer = call(served, scope, [body[:10]], ends=False)
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    assert not Event.objects.filter(external_id="slow-1").exists()


class StampMiddleware:
    """A middleware added to settings: its header must reach the fast path's answers too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Hub-Stamp"] = "stamped"
        return response


def test_a_middleware_added_to_settings_shows_up_on_fast_path_answers(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.StampMiddleware"]
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="stamped-1")
    path, headers = signed_request(source, secret, body)
    ours = fast("post", path, body, headers)
    theirs = django("post", path, body, headers)
    assert ours.status == 200
    assert ours.headers["x-hub-stamp"] == theirs.headers["x-hub-stamp"] == "stamped"
    refused = fast("post", path, body, {"X-Signature": "sha512=00"})
    assert refused.headers["x-hub-stamp"] == "stamped"


def test_a_secure_request_gets_what_middleware_adds_to_secure_ones(settings):
    settings.SECURE_HSTS_SECONDS = 3600
    source, _ = make_source("gridx")
    scope = scope_for("post", f"/hooks/{source.slug}/", {"host": "testserver"})
    plain = call(served, scope, [b"{}"])
    secure = call(served, {**scope, "scheme": "https"}, [b"{}"])
    theirs = django("post", f"/hooks/{source.slug}/", b"{}", secure=True)
    assert "strict-transport-security" not in plain.headers
    assert (
        secure.headers["strict-transport-security"] == theirs.headers["strict-transport-security"]
    )


def test_a_body_nested_too_deep_is_400_like_django():
    source, (secret,) = make_source("gridx")
    deep = b'{"id": "deep-1", "type": "t", "data": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    path, headers = signed_request(source, secret, deep)
    ours = fast("post", path, deep, headers)
    theirs = django("post", path, deep, headers)
    assert ours.status == 400
    assert ours.json() == {"error": "The body nests deeper than 64 levels."}
    assert_same(ours, theirs)
    assert not Event.objects.exists()


def test_a_body_the_server_could_not_read_is_400():
    # What the server sends for a malformed chunked body: a disconnect instead of the body.
    source, (secret,) = make_source("gridx")
    scope = scope_for("post", f"/hooks/{source.slug}/", {"host": "testserver"})

    async def run() -> Answer:
        answer = Answer(0)

        async def receive():
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            else:
                answer.content += message["body"]

        await served(scope, receive, send)
        return answer

    answer = asyncio.run(run())
    assert answer.status == 400
    assert answer.json() == {"error": "The body could not be read."}
    assert answer.headers["connection"] == "close"


def test_the_fast_path_warns_at_start_under_a_server_it_was_not_written_for(monkeypatch, caplog):
    from types import SimpleNamespace

    from receivers.fastpath.server import check_server

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    monkeypatch.setitem(sys.modules, "granian", SimpleNamespace(__version__="2.8.7"))
    assert check_server(scope) == []
    monkeypatch.setitem(sys.modules, "granian", SimpleNamespace(__version__="3.0.1"))
    assert check_server(scope) == ["granian is 3.0.1, not 2.8.x"]
    monkeypatch.delitem(sys.modules, "granian")
    assert check_server({"type": "lifespan"}) == [
        "the server speaks ASGI 2.0, not 3.0",
        "it is not served by granian",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3
    assert all("HUB_FAST_PATH" in message for message in warnings)


def test_a_writer_far_behind_answers_503_at_once(monkeypatch):
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="too-many-waiting")
    path, headers = signed_request(source, secret, body)
    monkeypatch.setattr(served.writer, "waiting", lambda: 5000)
    answer = fast("post", path, body, headers)
    assert answer.status == 503
    assert int(answer.headers["retry-after"]) > 0
    assert not Event.objects.filter(external_id="too-many-waiting").exists()


def test_a_request_the_database_does_not_answer_in_time_is_503_and_abandoned(monkeypatch):
    monkeypatch.setattr("receivers.fastpath.app.ANSWER_SECONDS", 0.2)
    handed = []
    monkeypatch.setattr(served.writer, "submit", handed.append)  # a writer that hangs
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="hung")
    path, headers = signed_request(source, secret, body)
    answer = fast("post", path, body, headers)
    assert answer.status == 503
    assert int(answer.headers["retry-after"]) > 0
    assert answer.content == UNAVAILABLE_BODY
    # The writer would skip it: nobody waits for its answer any more.
    assert [job.abandoned for job in handed] == [True]
