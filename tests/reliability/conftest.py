"""Fixtures of the tests with real processes, and the fault suite's table at the end of the run
(pytest captures the test's own output)."""

import shutil
from pathlib import Path

import pytest

from conftest import missing

from .processes import HubProcesses, Redis


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


@pytest.fixture
def hub(redis, logs):
    """The hub's processes on the pytest-django test database; each test starts those it needs."""
    processes = HubProcesses(redis, logs)
    yield processes
    processes.stop()
    for log in sorted(logs.glob("*.log")):
        print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-40:]))


def pytest_terminal_summary(terminalreporter) -> None:
    shown = set()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "fault_table" and report.nodeid not in shown:
                    shown.add(report.nodeid)
                    terminalreporter.write_sep("-", f"fault suite ({outcome})")
                    terminalreporter.write_line(value)
