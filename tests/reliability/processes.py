"""Real hub processes for the reliability tests: a private Redis, gunicorn and Celery."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


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

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=open(self.logs / f"{name}.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.children.append(process)
        return process

    def start_web(self, *extra: str) -> None:
        """gunicorn with the worker docker-compose.yml runs; `extra` options override."""
        self.spawn(
            "web",
            [
                str(BIN / "gunicorn"),
                "hub.wsgi",
                "-b",
                f"127.0.0.1:{self.web_port}",
                "-w",
                "2",
                "--worker-class",
                "receivers.worker.HubWorker",
                "--threads",
                "4",
                "--access-logfile",
                "-",
                *extra,
            ],
        )
        wait_port(self.web_port)

    def start_worker(
        self, beat: bool = True, queues: str | None = None, name: str = "worker"
    ) -> subprocess.Popen:
        """A Celery worker, with beat inside it unless `beat` is False (see start_beat);
        `queues` is its -Q (every queue when None), `name` its node and log file name."""
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
                "4",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.logs / f"{name}-beat-schedule"),
            ],
        )
        return self.worker

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
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)

    @property
    def receive_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/hooks"

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
