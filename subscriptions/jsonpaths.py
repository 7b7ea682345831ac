"""Dotted paths into an event's JSON payload: `data.applianceID`, `payload.0.meter_id`.

A path is split on dots and looked up with plain dict keys and list indexes: there is no
expression language, and nothing of a path is ever evaluated.
"""

from __future__ import annotations

import hashlib
import json

MAX_PATH_LENGTH = 200
MAX_SEGMENTS = 16
# Keys are stored in a column of this size; a longer value is stored as its digest.
MAX_KEY_LENGTH = 255


class Missing:
    """The value of a path that leads nowhere (distinct from JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = Missing()


def parse(path: object) -> tuple[str, ...]:
    """The path's segments; ValueError says what is wrong with it."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("a path is required, e.g. data.applianceID")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"a path has at most {MAX_PATH_LENGTH} characters")
    segments = tuple(path.split("."))
    if any(not segment for segment in segments):
        raise ValueError(f"{path!r} has an empty part (two dots, or a dot at an end)")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"a path has at most {MAX_SEGMENTS} parts")
    return segments


def lookup(payload: object, segments: tuple[str, ...]) -> object:
    """The value at the path, or MISSING; a number indexes a list (`payload.0`)."""
    value = payload
    for segment in segments:
        if isinstance(value, dict):
            if segment not in value:
                return MISSING
            value = value[segment]
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def key_of(value: object, prefix: str = "") -> str:
    """A looked-up value as an ordering or coalescing key; empty when there is no value.

    Strings are kept as they are, other JSON values as compact JSON, so that "7" and 7 are
    different keys, as they are different values.
    """
    if value is MISSING or value is None:
        return ""
    text = prefix + (value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    if len(text) > MAX_KEY_LENGTH:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text
