"""The fault suite's table, repeated at the end of the run (pytest captures the test's output)."""


def pytest_terminal_summary(terminalreporter) -> None:
    shown = set()
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "fault_table" and report.nodeid not in shown:
                    shown.add(report.nodeid)
                    terminalreporter.write_sep("-", f"fault suite ({outcome})")
                    terminalreporter.write_line(value)
