"""Fixtures of the tests that run the hub's real processes (tests/reliability, tests/deploy)."""

import shutil
from pathlib import Path

import pytest

from conftest import missing

from .reliability.processes import Redis


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Where the processes write their output (shown when a test fails)."""
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    return tmp_path


@pytest.fixture
def redis(logs):
    """A private redis-server, which a test may stop and start again on the same port."""
    server = Redis(logs)
    server.start()
    yield server
    server.stop()
