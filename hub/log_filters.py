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
