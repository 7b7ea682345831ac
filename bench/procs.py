"""Starting, waiting for and stopping the processes a benchmark phase needs.

Every process is started in its own session (its own process group), and stopped by that
group's id: gunicorn's and celery's children go with their parent, nothing else is touched.
Whatever is still running when the runner exits (normally, on Ctrl-C or on an error) is
stopped by `stop_all`.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

_running: list[Proc] = []


class Proc:
    def __init__(self, name: str, cmd: list[str], env: dict, cwd: Path, log_dir: Path):
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n=== {time.strftime('%X')} {' '.join(cmd)}\n".encode())
        self._log.flush()
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=str(cwd),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _running.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait(5)
        # Children that outlived their parent (a stuck celery thread, say) go too.
        self._signal(signal.SIGKILL)
        if not self._log.closed:
            self._log.close()
        if self in _running:
            _running.remove(self)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all() -> None:
    for proc in list(reversed(_running)):
        proc.stop(grace=5)


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0) -> None:
    """Until anything answers on url (any status): the server is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answered on {url} within {timeout:.0f} s")


def children_pids(pid: int) -> list[int]:
    """Direct children of pid, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU of every live process in a process group, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def process_cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / ticks, sum(values) / ticks


def wait_settled(*procs: Proc, idle_pct: float = 10.0, timeout: float = 30.0) -> float:
    """Wait until these process groups use less than idle_pct of a core over half a second.

    Answering one request proves one gunicorn worker is up; the others may still be importing
    Django, and that CPU would land in the first measured phase. Returns the seconds waited.
    """
    started = time.monotonic()
    previous = sum(group_cpu_seconds(p.pid) for p in procs)
    while time.monotonic() - started < timeout:
        time.sleep(0.5)
        now = sum(group_cpu_seconds(p.pid) for p in procs)
        if (now - previous) / 0.5 * 100 < idle_pct:
            break
        previous = now
    return time.monotonic() - started
