"""The WSGI fast path (hub.wsgi.application) answers exactly like the Django view.

Each request is sent twice: straight to hub.wsgi.application with an environ made by
RequestFactory, and through the Django test client (receive_view behind Django's middleware).
The first is made both ways the hub's gunicorn worker can: as a WSGI call (a thread of the
pool), and through FastReceive.answer_together as receivers.worker's event loop does.

transaction=True: FastReceive ends every request with close_old_connections(), as Django does;
inside the test transaction of a plain django_db test that closes the connection mid-transaction
(its autocommit differs from the configured one), so these tests run in autocommit.
"""

import io
import json
import sys
from dataclasses import dataclass, field
from unittest import mock
from urllib.parse import unquote_to_bytes, urlencode, urlsplit

import pytest
from django.db import OperationalError
from django.test import Client, RequestFactory, override_settings

from hub.wsgi import application
from receivers.lookup import forget_sources
from receivers.models import Event
from receivers.tests.factories import make_source
from receivers.tests.webhooks import GRIDX_EVENT, gridx_body, sign
from receivers.unavailable import UNAVAILABLE_BODY
from receivers.views import SERVER_ERROR

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_cache", "served"),
]


@pytest.fixture
def empty_cache():
    forget_sources()
    yield
    forget_sources()


@dataclass
class Answer:
    status: int
    headers: dict = field(default_factory=dict)
    content: bytes = b""

    def json(self):
        return json.loads(self.content)


@pytest.fixture(params=["wsgi call", "event loop"])
def served(request, monkeypatch):
    if request.param == "event loop":
        monkeypatch.setattr(sys.modules[__name__], "serve", call_together)


def call_together(environ: dict) -> Answer:
    """What receivers.worker does with a request that arrived whole."""
    (answer,) = application.answer_together([environ])
    if answer is None:
        # Not a receive URL: the worker runs the whole application.
        return call_wsgi(environ)
    status, headers, content = answer
    return Answer(status, {name.lower(): value for name, value in headers}, content)


def call_wsgi(environ: dict) -> Answer:
    answer = Answer(0)

    def start_response(status, headers, exc_info=None):
        answer.status = int(status.split(" ", 1)[0])
        answer.headers = {name.lower(): value for name, value in headers}

    chunks = application(environ, start_response)
    try:
        answer.content = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    return answer


def fast(method: str, path: str, body: bytes = b"", headers=None, **extra) -> Answer:
    factory = RequestFactory()
    if method == "post":
        request = factory.post(
            path, data=body, content_type="application/json", headers=headers, **extra
        )
    else:
        request = factory.generic(method.upper(), path, headers=headers, **extra)
    environ = request.environ
    # Building the request rewrote PATH_INFO to Django's decoded form; a WSGI server passes
    # the raw bytes decoded as ISO-8859-1 (PEP 3333), as RequestFactory made it at first.
    environ["PATH_INFO"] = unquote_to_bytes(urlsplit(path).path).decode("iso-8859-1")
    return serve(environ)


serve = call_wsgi


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
    logged = [r for r in caplog.records if r.name == "receivers.views"]
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


def test_a_body_without_content_length_is_read_to_the_end_the_server_marks():
    # What gunicorn passes for a chunked body: no CONTENT_LENGTH, the de-chunked stream, and
    # wsgi.input_terminated. Django alone would read it as empty.
    source, (secret,) = make_source("gridx")
    body = gridx_body(id="chunked-1")
    path, headers = signed_request(source, secret, body)
    environ = RequestFactory().post(path, body, content_type="application/json", headers=headers)
    environ = environ.environ
    del environ["CONTENT_LENGTH"]
    environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    assert serve(environ).status == 200
    assert bytes(Event.objects.get(external_id="chunked-1").raw_body) == body
