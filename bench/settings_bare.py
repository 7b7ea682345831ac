"""bench.settings with no middleware at all: the bare view's strict baseline (issue 15)."""

from bench.settings import *  # noqa: F403

MIDDLEWARE: list[str] = []
