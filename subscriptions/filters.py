"""Payload filters: conditions on JSON paths, all of which an event must meet to be relayed.

A filter is a list of rules, each `{"path": "data.siteId", "op": "equals", "value": "north"}`.
Operators: `equals`, `in` (a list of values), `exists` (`value` true or false; true when left
out), and the numeric comparisons `gt`, `gte`, `lt`, `lte`. Rules are data: they are checked
when a subscription is saved and compared with plain Python operators at fan-out.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass

from . import jsonpaths
from .jsonpaths import MISSING

MAX_RULES = 20
MAX_IN_VALUES = 1000

COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "gt": (">", operator.gt),
    "gte": (">=", operator.ge),
    "lt": ("<", operator.lt),
    "lte": ("<=", operator.le),
}
OPERATORS = ("equals", "in", "exists", *COMPARISONS)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@dataclass(frozen=True)
class Rule:
    path: str
    segments: tuple[str, ...]
    op: str
    value: object

    def holds(self, payload: object) -> bool:
        found = jsonpaths.lookup(payload, self.segments)
        if self.op == "exists":
            return (found is not MISSING) is self.value
        if found is MISSING:
            return False
        if self.op == "equals":
            return same(found, self.value)
        if self.op == "in":
            return any(same(found, option) for option in self.value)
        return is_number(found) and COMPARISONS[self.op][1](found, self.value)

    def __str__(self) -> str:
        if self.op == "exists":
            return f"{self.path} {'exists' if self.value else 'does not exist'}"
        if self.op == "equals":
            return f"{self.path} = {json.dumps(self.value)}"
        if self.op == "in":
            return f"{self.path} in {json.dumps(self.value)}"
        return f"{self.path} {COMPARISONS[self.op][0]} {json.dumps(self.value)}"


def value_problem(op: str, value: object, given: bool) -> str | None:
    if op == "exists":
        return None if not given or isinstance(value, bool) else "'value' must be true or false"
    if not given:
        return f"'{op}' needs a 'value'"
    if op == "in":
        if not isinstance(value, list) or not value:
            return "'in' needs a non-empty list as its 'value'"
        if len(value) > MAX_IN_VALUES:
            return f"'in' takes at most {MAX_IN_VALUES} values"
    if op in COMPARISONS and not is_number(value):
        return f"'{op}' compares numbers: its 'value' must be a number"
    return None


def parse_rule(rule: object) -> Rule:
    """One rule, checked; ValueError says what is wrong with it."""
    if not isinstance(rule, dict):
        raise ValueError('each rule is an object: {"path": …, "op": …, "value": …}')
    unknown = set(rule) - {"path", "op", "value"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    segments = jsonpaths.parse(rule.get("path"))
    op = rule.get("op")
    if op not in OPERATORS:
        raise ValueError(f"'op' must be one of {', '.join(OPERATORS)}")
    problem = value_problem(op, rule.get("value"), "value" in rule)
    if problem:
        raise ValueError(problem)
    value = rule.get("value", True) if op == "exists" else rule["value"]
    return Rule(rule["path"], segments, op, value)


def parse(rules: object) -> list[Rule]:
    """A whole filter, checked; ValueError names the first rule that is wrong and why."""
    if rules in (None, [], {}):
        return []
    if not isinstance(rules, list):
        raise ValueError("a filter is a list of rules")
    if len(rules) > MAX_RULES:
        raise ValueError(f"a filter has at most {MAX_RULES} rules")
    parsed = []
    for number, rule in enumerate(rules, start=1):
        try:
            parsed.append(parse_rule(rule))
        except ValueError as exc:
            raise ValueError(f"rule {number}: {exc}")
    return parsed


def passes(rules: list[Rule], payload: object) -> bool:
    return all(rule.holds(payload) for rule in rules)


def describe(rules: object) -> list[str]:
    """Each rule as a line a person reads (`data.power > 1000`); an invalid filter says so."""
    try:
        return [str(rule) for rule in parse(rules)]
    except ValueError as exc:
        return [f"invalid filter: {exc}"]
