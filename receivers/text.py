"""Text the hub stores and sends: PostgreSQL holds no NUL character and no unpaired surrogate,
and an HTTP header carries neither control characters nor anything outside Latin-1."""

from __future__ import annotations

import re
from urllib.parse import quote

# RFC 9110 `token`: what a header name is made of.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def storable_text(text: str) -> bool:
    """False for a NUL character or an unpaired surrogate."""
    return "\x00" not in text and (text.isascii() or is_utf8(text))


def is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def sendable_header_value(text: str) -> bool:
    """True when http.client can send it as a header value as it is: printable (no CR, LF,
    NUL or other control character) and Latin-1, the charset of header values."""
    if text.isascii():
        return text.isprintable()
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return text.isprintable()


def sendable_header_name(text: str) -> bool:
    return HEADER_NAME.fullmatch(text) is not None


def header_safe(text: str) -> str:
    """The text as it is when it can be sent as a header value, else percent-encoded (rows
    stored before types were checked)."""
    return text if sendable_header_value(text) else quote(text, safe=HEADER_SAFE)


# Printable ASCII but `%`: what percent-encoding keeps as it is.
HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
