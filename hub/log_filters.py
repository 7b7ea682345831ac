"""Log filters: a secret a platform sends in the URL never reaches a log line.

Openvolt signs nothing, so an Openvolt source is reached with its secret as `?token=` in the
URL, and request lines are logged whole (runserver's `django.server` log under `make run`,
any logger given a URL). The console handler masks the value before a record is written.
"""

from __future__ import annotations

import logging
import re

# `token=` as a query parameter, in a URL or in a request line.
URL_TOKEN = re.compile(r"([?&]token=)[^&#\s\"']*", re.IGNORECASE)
MASK = r"\1****"


def masked(text: str) -> str:
    return URL_TOKEN.sub(MASK, text) if "token=" in text.lower() else text


class MaskUrlTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(masked(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: masked(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


def mask_record(record: logging.LogRecord) -> None:
    """Mask a record's message, arguments and traceback in place."""
    MaskUrlTokens().filter(record)
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        if "token=" in text.lower():
            # Formatters print exc_text when exc_info is gone (the JSON one too).
            record.exc_info, record.exc_text = None, masked(text)


def mask_every_record() -> None:
    """Mask every record the process makes, whatever logger and handler write it: the web
    server's own loggers (gunicorn's error log, uvicorn's access log) have handlers that
    settings.LOGGING never sees, and they print request lines with Openvolt's ?token=."""
    make = logging.getLogRecordFactory()
    if getattr(make, "masks_url_tokens", False):
        return

    def make_masked(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        mask_record(record)
        return record

    make_masked.masks_url_tokens = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_masked)
