"""The server the fast path was written and measured for, checked once at start."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

# The fast path uses only the ASGI interface, but its figures and its hardening tests (a
# client that never reads, slow senders, chunked bodies) were measured with this server.
WRITTEN_FOR = ("granian", "2.8")
ASGI_VERSION = "3.0"


def check_server(scope: dict) -> list[str]:
    """Log a clear warning, once, for a server the fast path was not written for; the fast
    path still answers (it never falls back to the plain view silently)."""
    problems = []
    asgi = scope.get("asgi", {}).get("version", "2.0")
    if asgi != ASGI_VERSION:
        problems.append(f"the server speaks ASGI {asgi}, not {ASGI_VERSION}")
    name, version = WRITTEN_FOR
    server = sys.modules.get(name)
    if server is None:
        problems.append(f"it is not served by {name}")
    elif not (getattr(server, "__version__", "") + ".").startswith(version + "."):
        problems.append(f"{name} is {server.__version__}, not {version}.x")
    for problem in problems:
        logger.warning(
            "HUB_FAST_PATH: the fast path was written for %s %s.x and ASGI %s, but %s; "
            "it stays on: check docs/performance-and-concurrency.md before relying on it",
            name,
            version,
            ASGI_VERSION,
            problem,
        )
    return problems
