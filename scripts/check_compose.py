"""Validate docker-compose.yml without a Docker engine.

1. The Compose Specification's JSON schema (vendored by check-jsonschema) checks the shape.
2. What `docker compose config` would also refuse: a depends_on naming no service, a service
   with neither image nor build, a variable interpolated without a default, and any hub
   setting the services set that the settings module does not read.
"""

import re
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def problems() -> list[str]:
    found = []
    schema = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
    )
    if schema.returncode != 0:
        found.append(f"schema: {schema.stdout}{schema.stderr}")
    text = COMPOSE.read_text()
    spec = YAML(typ="safe").load(text)
    services = spec.get("services", {})
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            found.append(f"{name}: needs image or build")
        for dependency in service.get("depends_on", {}) or {}:
            if dependency not in services:
                found.append(f"{name}: depends_on unknown service {dependency}")
    for match in re.finditer(r"\$\{([A-Z0-9_]+)(:?[-?][^}]*)?\}", text):
        if match.group(2) is None:
            found.append(f"${{{match.group(1)}}} has no default: `config` fails without .env")
    settings_text = (ROOT / "hub" / "settings.py").read_text()
    for service in (s for s in services.values() if "build" in s):
        for variable in service.get("environment", {}) or {}:
            if f'"{variable}"' not in settings_text:
                found.append(f"{variable} is set in compose but hub/settings.py never reads it")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"docker-compose.yml: {problem}")
    print("docker-compose.yml: ok" if not found else f"{len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
