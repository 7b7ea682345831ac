"""Search inside stored payloads: `data.applianceID=fc0a…` finds the events whose payload holds
that value at that path.

Each term becomes JSON containment (`payload @> '{"data": {"applianceID": "fc0a…"}}'`), which
PostgreSQL answers from the GIN index `event_payload_idx` (jsonb_path_ops, migration 0006) on
any number of events; SQLite, the embedded default, gets the same test from a Python function
registered on each connection (`register_sqlite_function`), scanning its small table.

How a value matches: as the string typed, and, when it reads as a JSON number, `true`, `false`
or `null`, as that value too (`data.power=7.4` finds 7.4 and "7.4"). A value in double quotes
is a JSON string only (`data.code="42"`) and may hold spaces. A path names object keys joined
by dots; `[]` after a key looks into every element of the list there
(`payload[].meter_id=65f1…`). Several terms are ANDed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import JSONField, Q, QuerySet, Value
from django.db.models.expressions import F
from django.db.models.fields.json import DataContains

MAX_TERMS = 5
MAX_DEPTH = 10
MAX_VALUE_LENGTH = 255
EXAMPLE = "data.applianceID=fc0a…"
PATH_EXAMPLE = "data.applianceID or payload[].meter_id"
SQLITE_FUNCTION = "hub_json_contains"

# A key: anything but the characters the syntax uses; `[]` after it steps into a list.
SEGMENT = re.compile(r"([^.\[\]\s=:\"]+)((?:\[\])*)")
# A term in the admin's search box: path=value, the value bare or a JSON string in quotes.
ADMIN_TERM = re.compile(r'\s*([^\s=]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?=\s|$)\s*')


class PayloadSearchError(ValueError):
    """The search could not be read; the message says how to write it."""


@dataclass(frozen=True)
class Term:
    path: str
    value: str
    quoted: bool = False

    def needles(self) -> list[Any]:
        """The JSON documents a payload must contain, one per reading of the value."""
        return [nest(self.path, value) for value in readings(self.value, self.quoted)]


def readings(value: str, quoted: bool) -> list[Any]:
    """The string itself, and the JSON scalar it spells when it spells one."""
    if quoted or value != value.strip():
        return [value]
    try:
        scalar = json.loads(value)
    except ValueError:
        return [value]
    if isinstance(scalar, bool) or scalar is None or isinstance(scalar, int):
        return [value, scalar]
    if isinstance(scalar, float) and math.isfinite(scalar):  # no NaN: not JSON
        return [value, scalar]
    return [value]


def segments(path: str) -> list[tuple[str, int]]:
    """`payload[].meter_id` -> [("payload", 1), ("meter_id", 0)]: keys and list depths."""
    parts = path.split(".")
    if not path or len(parts) > MAX_DEPTH:
        raise PayloadSearchError(
            f"A payload path has 1 to {MAX_DEPTH} keys joined by dots, e.g. {PATH_EXAMPLE}."
        )
    found = []
    for part in parts:
        match = SEGMENT.fullmatch(part)
        if match is None:
            raise PayloadSearchError(
                f"Cannot read the path {path!r}: keys joined by dots, [] after a key to look "
                f"into a list, e.g. {PATH_EXAMPLE}."
            )
        found.append((match.group(1), len(match.group(2)) // 2))
    return found


def nest(path: str, value: Any) -> Any:
    """The smallest document with `value` at `path`."""
    document = value
    for key, lists in reversed(segments(path)):
        for _ in range(lists):
            document = [document]
        document = {key: document}
    return document


def term(path: str, raw_value: str) -> Term:
    """A checked term from a path and a value as written (quoted or bare)."""
    quoted = len(raw_value) >= 2 and raw_value.startswith('"') and raw_value.endswith('"')
    value = raw_value
    if quoted:
        try:
            value = json.loads(raw_value)
        except ValueError:
            raise PayloadSearchError(f"Cannot read the quoted value {raw_value}.") from None
    if not value and not quoted:
        raise PayloadSearchError(f'{path} needs a value (an empty string is written "").')
    if len(value) > MAX_VALUE_LENGTH:
        raise PayloadSearchError(f"A value is at most {MAX_VALUE_LENGTH} characters.")
    segments(path)
    storable(path + value)
    return Term(path, value, quoted)


def storable(text: str) -> None:
    """What a JSON column can hold: no NUL character, no lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadSearchError("A path or value holds a character that is not text.") from None
    if "\x00" in text:
        raise PayloadSearchError("A path or value holds a NUL character.")


def is_payload_search(text: str) -> bool:
    """The admin's search box holds payload terms when it has a `=`; else it is an event id."""
    return "=" in text


def parse_admin_search(text: str) -> list[Term]:
    """`data.applianceID=fc0a… data.power=7.4`: terms separated by spaces."""
    terms, position = [], 0
    text = text.strip()
    while position < len(text):
        match = ADMIN_TERM.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].split()[0]
            raise PayloadSearchError(
                f"Cannot read {rest!r}: search the payload with path=value, e.g. {EXAMPLE}"
            )
        terms.append(term(match.group(1), match.group(2)))
        position = match.end()
    return limited(terms)


def parse_api_terms(values: list[str]) -> list[Term]:
    """`?payload=data.applianceID:fc0a…`, repeatable: path, a colon, the value."""
    terms = []
    for value in values:
        path, colon, raw = value.partition(":")
        if not colon:
            raise PayloadSearchError(
                f"Write payload=path:value, e.g. data.applianceID:fc0a…; got {value!r}."
            )
        terms.append(term(path, raw))
    return limited(terms)


def limited(terms: list[Term]) -> list[Term]:
    if len(terms) > MAX_TERMS:
        raise PayloadSearchError(f"At most {MAX_TERMS} payload terms at once.")
    return terms


class PayloadContains(DataContains):
    """`@>` on PostgreSQL; on SQLite, the registered Python function with the same meaning."""

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{SQLITE_FUNCTION}({lhs}, {rhs})", (*lhs_params, *rhs_params)


def matching(queryset: QuerySet, terms: list[Term], field: str = "payload") -> QuerySet:
    """Events holding every term (each term: any of its readings)."""
    for each in terms:
        either = Q()
        for needle in each.needles():
            wanted = Value(needle, output_field=JSONField())
            either |= Q(PayloadContains(F(field), wanted))
        queryset = queryset.filter(either)
    return queryset


# SQLite: PostgreSQL's jsonb containment, in Python.


def contains(document: Any, needle: Any) -> bool:
    """PostgreSQL's `@>`: objects hold the needle's keys, lists hold each of its elements
    somewhere, scalars are equal and of the same JSON type."""
    if isinstance(needle, dict):
        return isinstance(document, dict) and all(
            key in document and contains(document[key], value) for key, value in needle.items()
        )
    if isinstance(needle, list):
        return isinstance(document, list) and all(
            any(contains(item, wanted) for item in document) for wanted in needle
        )
    if isinstance(document, dict | list):
        return False
    return json_type(document) == json_type(needle) and document == needle


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"  # before numbers: True == 1 in Python, never in JSON
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def sqlite_contains(document: str | None, needle: str | None) -> bool:
    if document is None or needle is None:
        return False
    try:
        return contains(json.loads(document), json.loads(needle))
    except (ValueError, RecursionError):
        return False


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """Connected to Django's connection_created: SQLite connections learn the containment."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            SQLITE_FUNCTION, 2, sqlite_contains, deterministic=True
        )
