"""The energy options as data: paths, filter rules, coalescing rules, expiry times and the keys
a fan-out computes from them. No database: these are the pure functions the services call."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from subscriptions import filters, jsonpaths, options
from subscriptions.jsonpaths import MISSING

PAYLOAD = {
    "type": "ev/measurement",
    "source": "/systems/site-north",
    "data": {
        "applianceID": "wallbox-7",
        "power": 7400,
        "phases": 3,
        "enabled": True,
        "ratio": 0.5,
        "meters": [{"meter_id": "m-1"}, {"meter_id": "m-2"}],
        "site": None,
    },
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.applianceID", "wallbox-7"),
        ("data.meters.1.meter_id", "m-2"),
        ("data.meters.2.meter_id", MISSING),
        ("data.site", None),
        ("data.nothing", MISSING),
        ("data.power.watts", MISSING),
        ("type", "ev/measurement"),
    ],
)
def test_paths_read_dict_keys_and_list_indexes(path, expected):
    assert jsonpaths.lookup(PAYLOAD, jsonpaths.parse(path)) == expected


@pytest.mark.parametrize("path", ["", "  ", "data..id", ".data", "data.", 7, None, "a." * 20 + "b"])
def test_bad_paths_are_refused_with_a_reason(path):
    with pytest.raises(ValueError, match=r"\w"):
        jsonpaths.parse(path)


def test_keys_keep_strings_and_tell_json_types_apart():
    assert jsonpaths.key_of("wallbox-7") == "wallbox-7"
    assert jsonpaths.key_of(7) == "7"
    assert jsonpaths.key_of("7") != jsonpaths.key_of({"id": 7})
    assert jsonpaths.key_of(None) == jsonpaths.key_of(MISSING) == ""
    long = jsonpaths.key_of("x" * 1000)
    assert long.startswith("sha256:") and len(long) <= jsonpaths.MAX_KEY_LENGTH
    assert long != jsonpaths.key_of("x" * 999)


@pytest.mark.parametrize(
    ("rule", "holds"),
    [
        ({"path": "source", "op": "equals", "value": "/systems/site-north"}, True),
        ({"path": "source", "op": "equals", "value": "/systems/site-south"}, False),
        ({"path": "data.phases", "op": "equals", "value": 3.0}, True),
        ({"path": "data.enabled", "op": "equals", "value": 1}, False),
        ({"path": "data.phases", "op": "equals", "value": True}, False),
        ({"path": "data.applianceID", "op": "in", "value": ["wallbox-7", "wallbox-8"]}, True),
        ({"path": "data.applianceID", "op": "in", "value": ["wallbox-1"]}, False),
        ({"path": "data.site", "op": "exists"}, True),
        ({"path": "data.nothing", "op": "exists"}, False),
        ({"path": "data.nothing", "op": "exists", "value": False}, True),
        ({"path": "data.power", "op": "gt", "value": 7000}, True),
        ({"path": "data.power", "op": "gte", "value": 7400}, True),
        ({"path": "data.power", "op": "lt", "value": 7400}, False),
        ({"path": "data.ratio", "op": "lte", "value": 0.5}, True),
        ({"path": "data.applianceID", "op": "gt", "value": 1}, False),
        ({"path": "data.enabled", "op": "gt", "value": 0}, False),
        ({"path": "data.nothing", "op": "lt", "value": 1}, False),
    ],
)
def test_each_operator(rule, holds):
    assert filters.passes(filters.parse([rule]), PAYLOAD) is holds


def test_rules_are_anded():
    one_site = {"path": "source", "op": "equals", "value": "/systems/site-north"}
    strong = {"path": "data.power", "op": "gt", "value": 10000}
    assert filters.passes(filters.parse([one_site]), PAYLOAD)
    assert not filters.passes(filters.parse([one_site, strong]), PAYLOAD)
    assert filters.passes(filters.parse([]), PAYLOAD)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"path": "a"}, "a filter is a list of rules"),
        (["source"], "rule 1: each rule is an object"),
        ([{"path": "a", "op": "matches", "value": ".*"}], "rule 1: 'op' must be one of"),
        ([{"path": "a", "op": "equals"}], "rule 1: 'equals' needs a 'value'"),
        ([{"path": "a", "op": "in", "value": "x"}], "rule 1: 'in' needs a non-empty list"),
        ([{"path": "a", "op": "gt", "value": "10"}], "rule 1: 'gt' compares numbers"),
        ([{"path": "a", "op": "exists", "value": "yes"}], "true or false"),
        ([{"path": "a..b", "op": "exists"}], "empty part"),
        ([{"path": "a", "op": "exists", "expr": "1"}], "unknown key"),
        (
            [{"path": "a", "op": "exists"}, {"path": "b", "op": "lt", "value": None}],
            "rule 2: 'lt' compares numbers",
        ),
        ([{"path": "a", "op": "exists"}] * 21, "at most 20 rules"),
    ],
)
def test_invalid_filters_say_which_rule_and_why(rules, message):
    with pytest.raises(ValidationError) as raised:
        options.validate_filter(rules)
    assert message in " ".join(raised.value.messages)


def test_code_in_a_filter_is_data_never_run():
    rules = filters.parse([{"path": "__import__('os').system('x')", "op": "exists"}])
    assert not filters.passes(rules, PAYLOAD)
    assert filters.describe([{"path": "data.x", "op": "equals", "value": "__import__"}]) == [
        'data.x = "__import__"'
    ]


def test_filters_read_as_rules():
    rules = [
        {"path": "source", "op": "equals", "value": "/systems/site-north"},
        {"path": "data.applianceID", "op": "in", "value": ["wallbox-7", "wallbox-8"]},
        {"path": "data.evseId", "op": "exists"},
        {"path": "data.note", "op": "exists", "value": False},
        {"path": "data.power", "op": "gte", "value": 1000},
    ]
    assert filters.describe(rules) == [
        'source = "/systems/site-north"',
        'data.applianceID in ["wallbox-7", "wallbox-8"]',
        "data.evseId exists",
        "data.note does not exist",
        "data.power >= 1000",
    ]
    assert filters.describe("nonsense") == ["invalid filter: a filter is a list of rules"]


@pytest.mark.parametrize(
    "rules",
    [
        {"types": ["ev/*"], "key": "data.id"},
        [{"types": [], "key": "data.id"}],
        [{"types": ["ev/*"]}],
        [{"types": ["ev/*"], "key": "data..id"}],
        [{"types": "ev/*", "key": "data.id"}],
    ],
)
def test_invalid_coalescing_is_refused(rules):
    with pytest.raises(ValidationError):
        options.validate_coalesce(rules)


@pytest.mark.parametrize(
    "value",
    [[300], {"ev/*": 0}, {"ev/*": "300"}, {"ev/*": True}, {"": 5}, {"ev/*": 10**9}],
)
def test_invalid_expiry_times_are_refused(value):
    with pytest.raises(ValidationError):
        options.validate_expiry_by_type(value)


def subscription(**fields) -> SimpleNamespace:
    plain = {
        "filter": [],
        "ordering_key": "",
        "coalesce": [],
        "expire_after": None,
        "expire_after_by_type": {},
    }
    return SimpleNamespace(**{**plain, **fields})


def event(event_type: str = "ev/measurement", occurred_at=None, **data) -> SimpleNamespace:
    received = datetime(2026, 3, 2, 8, 15, 30, tzinfo=UTC)
    return SimpleNamespace(
        type=event_type,
        payload={"data": data},
        occurred_at=occurred_at,
        received_at=received,
    )


def test_a_subscription_without_options_has_no_plan():
    assert options.plan_of(subscription()) is None


@pytest.mark.parametrize(
    "stored",
    [
        {"filter": [{"path": "a", "op": "gt", "value": "x"}]},
        {"ordering_key": "a..b"},
        {"coalesce": [{"types": []}]},
        {"expire_after_by_type": {"ev/*": "300"}},
    ],
)
def test_options_that_no_longer_parse_are_a_value_error(stored):
    with pytest.raises(ValueError, match=r"\w"):
        options.plan_of(subscription(**stored))


def test_stamps_carry_the_keys_and_the_deadline():
    plan = options.plan_of(
        subscription(
            ordering_key="data.evseId",
            coalesce=[{"types": ["ev/measurement"], "key": "data.evseId"}],
            expire_after=600,
        )
    )
    got = event(evseId="evse-1")
    stamp = plan.stamp(got)
    assert stamp.order_key == "evse-1"
    assert stamp.coalesce_key == "0:evse-1"
    assert stamp.expires_at == got.received_at + timedelta(seconds=600)
    other = plan.stamp(event("ev/plugged", evseId="evse-1"))
    assert (other.order_key, other.coalesce_key) == ("evse-1", "")
    assert plan.stamp(event()).order_key == ""


def test_coalescing_rules_keep_their_keys_apart():
    plan = options.plan_of(
        subscription(
            coalesce=[
                {"types": ["appliance/online", "appliance/offline"], "key": "data.id"},
                {"types": ["ev/measurement"], "key": "data.id"},
            ]
        )
    )
    online = plan.stamp(event("appliance/online", id="a-1")).coalesce_key
    offline = plan.stamp(event("appliance/offline", id="a-1")).coalesce_key
    measured = plan.stamp(event("ev/measurement", id="a-1")).coalesce_key
    assert online == offline != measured


def test_expiry_by_type_the_shortest_match_wins_over_the_default():
    plan = options.plan_of(
        subscription(
            expire_after=3600,
            expire_after_by_type={"grid-signal-processor/*": 300, "*/set": 60, "ev/*": 86400},
        )
    )
    assert plan.expiry_seconds("grid-signal-processor/limitation-of-power-consumption/set") == 60
    assert plan.expiry_seconds("grid-signal-processor/x/unset") == 300
    assert plan.expiry_seconds("ev/plugged") == 86400
    assert plan.expiry_seconds("appliance/online") == 3600
    only_types = options.plan_of(subscription(expire_after_by_type={"ev/*": 60}))
    assert only_types.expiry_seconds("appliance/online") is None
    assert only_types.stamp(event("appliance/online")).expires_at is None


def test_the_platforms_time_counts_unless_it_is_ahead_of_ours():
    plan = options.plan_of(subscription(expire_after=60))
    earlier = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert plan.stamp(event(occurred_at=earlier)).expires_at == earlier + timedelta(seconds=60)
    ahead = event(occurred_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert plan.stamp(ahead).expires_at == ahead.received_at + timedelta(seconds=60)
