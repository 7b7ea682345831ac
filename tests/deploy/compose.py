"""docker-compose.yml read the way `docker compose` reads it, to run its services without Docker.

The services' commands, environment and healthchecks come from the file itself, with Compose's
own interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR`, `$$`), so a change to
the file is what the production-path test runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's interpolation, applied to every string of a loaded file."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        current = variables.get(name)
        op = match["op"]
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return match["arg"] if unset else current
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise ValueError(f"{name} is required: {match['arg']}")
        return current or ""

    return VARIABLE.sub(substitute, value)


def load(variables: Mapping[str, str]) -> dict:
    return interpolate(YAML(typ="safe").load(COMPOSE.read_text()), variables)


def command(service: dict) -> list[str]:
    """A service's command as the argument list the container runs (a string is split, not
    given to a shell, as Compose does)."""
    value = service["command"]
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def healthcheck(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    assert kind == "CMD", f"unsupported healthcheck form {kind}"
    return [str(part) for part in rest]


def environment(service: dict) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {key: "" if item is None else str(item) for key, item in value.items()}


def image_build_steps() -> list[str]:
    """The Dockerfile's RUN lines after its sources are copied in (`COPY . .`): what building
    the image does to the code beyond installing requirements.txt."""
    steps, copied = [], False
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY . "):
            copied = True
        elif copied and line.startswith("RUN "):
            steps.append(line[4:])
    return steps


def image_environment() -> dict[str, str]:
    """The ENV lines of the Dockerfile the services are built from (`ENV A=1 B=2` form)."""
    found: dict[str, str] = {}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, item = pair.partition("=")
                found[key] = item
    return found
