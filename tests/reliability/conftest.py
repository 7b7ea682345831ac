"""Fixtures of the tests with real processes, and the fault suite's table at the end of the run
(pytest captures the test's own output)."""

import pytest

from .processes import HubProcesses, show_tails


@pytest.fixture
def hub(redis, logs):
    """The hub's processes on the pytest-django test database; each test starts those it needs."""
    processes = HubProcesses(redis, logs)
    yield processes
    processes.stop()
    show_tails(logs)


def pytest_terminal_summary(terminalreporter) -> None:
    shown = set()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "fault_table" and report.nodeid not in shown:
                    shown.add(report.nodeid)
                    terminalreporter.write_sep("-", f"fault suite ({outcome})")
                    terminalreporter.write_line(value)
