"""Pools of unique, validly signed gridX events for the load generators.

One line per event, `<hex digest>\t<json body>`: wrk's Lua script and bench/loadgen.py both
read this format. Signatures come from the hub's own gridX provider (`GridX.sign`), so the
hub, the textbook baseline and any other receiver verify exactly what gridX would send.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from receivers.providers.gridx import GridX

TYPES = ("ev/measurement", "appliance/online", "ev/charge-started", "inverter/status")


def gridx_body(event_id: str, n: int, devices: int = 0, event_type: str = "") -> bytes:
    """The n-th event of a pool; with `devices`, of device n % devices (data.applianceID)."""
    data: dict = {"power": 1000 + n % 7000, "energy": n, "unit": "W"}
    if devices:
        data["applianceID"] = f"appliance-{n % devices}"
    body = {
        "id": event_id,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "specVersion": "1.0",
        "source": "/systems/5d0c3b1e-7a3f-4a52-9d63-bench0000001",
        "type": event_type or TYPES[n % len(TYPES)],
        "dataContentType": "application/json",
        "data": data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signed_lines(
    secret: str, count: int, prefix: str, devices: int = 0, event_type: str = ""
) -> list[str]:
    provider = GridX()
    now = datetime.now(UTC)
    lines = []
    for n in range(count):
        body = gridx_body(f"{prefix}-{uuid.uuid4()}", n, devices, event_type)
        header = provider.sign(body, secret, None, now).headers["X-Signature"]
        lines.append(f"{header.removeprefix('sha512=')}\t{body.decode()}")
    return lines


def write_pool(path: Path, secret: str, count: int, prefix: str, **shape) -> Path:
    """`shape`: signed_lines's devices and event_type."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(signed_lines(secret, count, prefix, **shape)) + "\n")
    return path


def read_pool(path: Path) -> list[tuple[str, bytes]]:
    out = []
    for line in path.read_text().splitlines():
        digest, _, body = line.partition("\t")
        out.append((digest, body.encode()))
    return out


def event_id_of(body: bytes) -> str:
    return json.loads(body)["id"]
