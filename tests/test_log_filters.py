"""A secret sent in the URL (Openvolt's ?token=) never reaches a log line."""

import io
import logging

import pytest

from hub.log_filters import masked

SECRET = "ovt_s3cr3t-Value_123"


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"POST /hooks/ov/?token={SECRET} HTTP/1.1", "POST /hooks/ov/?token=**** HTTP/1.1"),
        (f"/hooks/ov/?a=1&TOKEN={SECRET}&b=2", "/hooks/ov/?a=1&TOKEN=****&b=2"),
        (f'"POST /hooks/ov/?token={SECRET}" 200', '"POST /hooks/ov/?token=****" 200'),
        ("/hooks/gridx/?tokens=1", "/hooks/gridx/?tokens=1"),
        ("no url here", "no url here"),
    ],
)
def test_url_tokens_are_masked(text, expected):
    assert masked(text) == expected


def configured_handlers() -> list[logging.Handler]:
    """The handlers hub.settings.LOGGING made (pytest adds its own, which have no name)."""
    loggers = (logging.getLogger(), logging.getLogger("django.server"))
    return [h for logger in loggers for h in logger.handlers if h.get_name()]


def test_the_configured_handlers_mask_what_they_write():
    handlers = configured_handlers()
    assert [h.get_name() for h in handlers] == ["console", "server"]
    for handler in handlers:
        stream = io.StringIO()
        original = handler.setStream(stream)
        try:
            # What runserver logs for each request: the request line, the status, the size.
            request_line = f"POST /hooks/ov/?token={SECRET} HTTP/1.1"
            record = logging.getLogger("django.server").makeRecord(
                "django.server",
                logging.INFO,
                __file__,
                1,
                '"%s" %s %s',
                (request_line, "200", "38"),
                None,
            )
            handler.handle(record)
        finally:
            handler.setStream(original)
        assert SECRET not in stream.getvalue()
        assert "?token=**** HTTP/1.1" in stream.getvalue()
