"""Payload search: reading the terms, the containment they become, and the same answers from
PostgreSQL's `@>` and from the Python function SQLite uses."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from receivers import payload_search
from receivers.models import Event
from receivers.payload_search import PayloadSearchError, contains, parse_admin_search
from receivers.tests.factories import EventFactory, SourceFactory

DOCUMENTS = {
    "heat-pump": {"data": {"applianceID": "fc0a-1", "power": 7.4, "online": True, "n": 5}},
    "string-five": {"data": {"applianceID": "fc0a-2", "n": "5", "note": None}},
    "meters": {"payload": [{"meter_id": "m-1"}, {"meter_id": "m-2", "kwh": 3}]},
    "one-meter": {"payload": {"meter_id": "m-1"}},
    "tags": {"data": {"tags": ["red", "blue"], "code": "42"}},
    "spaces": {"data": {"name": "Heat pump 2", "flag": "true"}},
}


def found(terms: list[payload_search.Term]) -> set[str]:
    events = payload_search.matching(Event.objects.all(), terms)
    return set(events.values_list("external_id", flat=True))


@pytest.fixture
def stored(db):
    source = SourceFactory()
    for name, payload in DOCUMENTS.items():
        EventFactory(source=source, external_id=name, payload=payload)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("data.applianceID=fc0a-1", {"heat-pump"}),
        ("data.applianceID=fc0a", set()),  # whole values only
        ("data.n=5", {"heat-pump", "string-five"}),  # a number also matches its string
        ('data.n="5"', {"string-five"}),  # quoted: the string only
        ("data.power=7.4", {"heat-pump"}),
        ("data.power=7.40", {"heat-pump"}),  # the same JSON number
        ("data.online=true", {"heat-pump"}),
        ("data.flag=true", {"spaces"}),  # and the string "true"
        ("data.note=null", {"string-five"}),
        ("payload[].meter_id=m-1", {"meters"}),  # into a list
        ("payload.meter_id=m-1", {"one-meter"}),  # a path names keys: no list walked
        ("payload[].meter_id=m-2 payload[].kwh=3", {"meters"}),
        ("data.tags[]=blue", {"tags"}),
        ("data.code=42", {"tags"}),
        ('data.name="Heat pump 2"', {"spaces"}),
        ("data.applianceID=fc0a-1 data.n=5", {"heat-pump"}),  # ANDed
        ("data.applianceID=fc0a-2 data.power=7.4", set()),
        ("data.missing=1", set()),
    ],
)
def test_search_finds_exactly_the_events_holding_the_value(stored, search, expected):
    assert found(parse_admin_search(search)) == expected


def test_api_terms_use_a_colon_and_keep_colons_in_the_value(stored):
    EventFactory(external_id="urn", payload={"data": {"site": "urn:site:7"}})
    terms = payload_search.parse_api_terms(["data.site:urn:site:7"])
    assert found(terms) == {"urn"}
    assert found(payload_search.parse_api_terms(["data.n:5", "data.applianceID:fc0a-2"])) == {
        "string-five"
    }


@pytest.mark.parametrize(
    ("search", "says"),
    [
        ("=5", "1 to 10 keys"),
        ("data..x=5", "Cannot read the path"),
        ("data.x[=5", "Cannot read the path"),
        ("data.x=", "needs a value"),
        ('data.x="unclosed', "Cannot read"),
        ("data.x=1 loose", "Cannot read 'loose'"),
        ('data.x="\\u0000"', "NUL"),
        ('data.x="\\ud800"', "not text"),
        ("a=1 b=2 c=3 d=4 e=5 f=6", "At most 5"),
        ("a.b.c.d.e.f.g.h.i.j.k=1", "1 to 10 keys"),
        (f"data.x={'v' * 256}", "at most 255"),
    ],
)
def test_bad_syntax_is_refused_with_a_message(search, says):
    with pytest.raises(PayloadSearchError, match=says):
        parse_admin_search(search)


@pytest.mark.parametrize("value", ["data.x", "data.x:", ":5", "data x:5"])
def test_bad_api_terms_are_refused(value):
    with pytest.raises(PayloadSearchError):
        payload_search.parse_api_terms([value])


def test_numbers_that_json_cannot_hold_match_only_as_strings():
    for value in ("NaN", "Infinity", "1e999"):
        (term,) = parse_admin_search(f"data.x={value}")
        assert term.needles() == [{"data": {"x": value}}]


def test_the_python_containment_keeps_json_types_apart():
    assert contains({"a": 1}, {"a": 1.0})
    assert not contains({"a": True}, {"a": 1})
    assert not contains({"a": 0}, {"a": False})
    assert not contains({"a": "1"}, {"a": 1})
    assert contains({"a": [1, {"b": 2, "c": 3}]}, {"a": [{"b": 2}]})
    assert not contains({"a": {"b": 2}}, {"a": [{"b": 2}]})
    assert not contains({"a": [{"b": 2}]}, {"a": {"b": 2}})


@pytest.mark.postgres
def test_python_containment_answers_as_postgresql_does(db):
    """SQLite's function and PostgreSQL's @> agree, document by document, needle by needle."""
    needles = [
        term.needles()
        for search in (
            "data.n=5",
            "data.power=7.4",
            "data.online=true",
            "data.note=null",
            "payload[].meter_id=m-1",
            "payload.meter_id=m-1",
            "data.tags[]=red",
        )
        for term in parse_admin_search(search)
    ]
    with connection.cursor() as cursor:
        for document in DOCUMENTS.values():
            for needle in (n for alternatives in needles for n in alternatives):
                cursor.execute(
                    "SELECT %s::jsonb @> %s::jsonb", [json.dumps(document), json.dumps(needle)]
                )
                assert cursor.fetchone()[0] == contains(document, needle), (document, needle)


@pytest.mark.postgres
def test_postgresql_answers_a_payload_search_from_the_gin_index(stored):
    terms = parse_admin_search("data.applianceID=fc0a-1 data.n=5")
    events = payload_search.matching(Event.objects.order_by("-received_at"), terms)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = events.explain()
    assert "event_payload_idx" in plan
    assert "@>" in str(events.query)
