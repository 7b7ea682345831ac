"""Real hub processes for the reliability tests: a private Redis and PostgreSQL, the web server
(Granian with the receive fast path, as docker-compose.yml runs it) and Celery."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.db import connection
from django.utils import timezone

from receivers.providers import get_provider

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# docker-compose.yml's web command, but the address and the number of workers.
SERVER_OPTIONS = (
    "--interface",
    "asgi",
    "--http",
    "1",
    "--no-ws",
    "--loop",
    "uvloop",
    "--http1-header-read-timeout",
    "10000",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout}s")


def database_url() -> str:
    """The pytest-django test database, so the processes see what the test writes."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


class Redis:
    """A private redis-server, so a test may stop and restart it without touching others."""

    def __init__(self, logs: Path):
        self.port = free_port()
        self.logs = logs
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=open(self.logs / f"redis-{self.port}.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl): on the PATH, else where Debian keeps it."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


class Postgres:
    """A private PostgreSQL cluster (initdb as the `postgres` OS user into a temporary folder,
    pg_ctl on a free port), so a test may restart or freeze it without touching the shared
    server."""

    def __init__(self, logs: Path):
        self.port = free_port()
        self.logs = logs
        self.home = Path(tempfile.mkdtemp(prefix="hub-pg-"))
        self.data = self.home / "data"
        # initdb refuses to run as root: then it runs as the postgres user, who owns the folder.
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/hub"

    def pg(self, program: str, *args: str) -> None:
        binary = postgres_bin(program)
        assert binary, f"{program} is not installed"
        subprocess.run([*self.run_as, binary, *args], check=True, capture_output=True)

    def create(self) -> None:
        """initdb, start, and an empty `hub` database."""
        self.pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()
        self.pg("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "hub")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.home}"
        log = str(self.home / "postgres.log")
        self.pg("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def processes(self) -> list[int]:
        """The postmaster, then its children (the backends and the server's own processes)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self) -> None:
        """Hang the server: the postmaster first (it forks no more backends), then the rest."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self.processes()):
            os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.thaw()
            self.stop("immediate")
        log = self.home / "postgres.log"
        if log.exists():
            shutil.copy(log, self.logs / f"postgres-{self.port}.log")
        shutil.rmtree(self.home, ignore_errors=True)


class HubProcesses:
    def __init__(self, redis: Redis, logs: Path, extra_env: dict[str, str] | None = None):
        self.redis = redis
        self.logs = logs
        self.web_port = free_port()
        self.children: list[subprocess.Popen] = []
        self.worker: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "hub.settings",
            "SECRET_KEY": "reliability-test-key",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": redis.url,
            "HUB_ALLOW_PRIVATE_TARGETS": "1",
            "HUB_SWEEP_SECONDS": "1",
            "HUB_LEASE_MARGIN_SECONDS": "2",
            # Drains that wait for more work, as in production (the test settings turn it off).
            "HUB_DRAIN_IDLE_MS": "500",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }

    def spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=open(self.logs / f"{name}.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(process)
        return process

    def start_web(self, *extra: str) -> None:
        """The web server as docker-compose.yml runs it; `extra` options override."""
        self.env["HUB_FAST_PATH"] = "1"
        self.spawn(
            "web",
            [
                str(BIN / "granian"),
                *SERVER_OPTIONS,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.web_port),
                "--workers",
                "2",
                *extra,
                "hub.asgi:application",
            ],
        )
        wait_port(self.web_port)

    def start_worker(
        self,
        beat: bool = True,
        concurrency: int = 4,
        name: str = "worker",
        env: dict[str, str] | None = None,
        queues: str | None = None,
    ) -> subprocess.Popen:
        """A Celery worker, with beat inside it unless `beat` is False (see start_beat); its
        output goes to `<name>.log` (`name` is also its node's), `env` adds to its
        environment, and `queues` is its -Q (every queue when None)."""
        self.worker = self.spawn(
            name,
            [
                str(BIN / "celery"),
                "-A",
                "hub",
                "worker",
                *(["--beat"] if beat else []),
                *(["-Q", queues] if queues else []),
                "-n",
                f"{name}@%h",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.logs / f"{name}-beat-schedule"),
            ],
            env,
        )
        return self.worker

    def wait_ready(self, name: str = "worker", timeout: float = 60) -> None:
        """Until the worker logging to `<name>.log` says it is ready to take tasks."""
        log = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists() and " ready." in log.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"{name} was not ready after {timeout}s")

    def start_beat(self) -> subprocess.Popen:
        """beat as a process of its own, as docker-compose.yml runs it."""
        return self.spawn(
            "beat",
            [
                str(BIN / "celery"),
                "-A",
                "hub",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.logs / "beat-only-schedule"),
            ],
        )

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.kill(self.worker)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost machine would."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    @property
    def receive_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/hooks"

    def post_gridx(self, slug: str, body: bytes, secret: str) -> httpx.Response:
        """`body` as gridX sends it, signed with `secret`, to the web process's source `slug`."""
        signed = get_provider("gridx").sign(body, secret, None, timezone.now())
        return httpx.post(
            f"{self.receive_url}/{slug}/",
            content=body,
            headers={**signed.headers, "content-type": "application/json"},
            timeout=10,
        )

    def stop(self) -> None:
        for process in self.children:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.children:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_until(condition, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def show_tails(logs: Path, lines: int = 40) -> None:
    """The end of every process's log, printed for pytest to show with a failed test."""
    for log in sorted(logs.glob("*.log")):
        print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-lines:]))
