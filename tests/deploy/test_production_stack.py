"""The production path: `pip install -r requirements.txt` and docker-compose.yml's own services.

A fresh virtualenv gets requirements.txt only (what the Dockerfile installs, never the dev
requirements). The `web`, `worker`, `worker-high` and `beat` services then run the commands,
environment and healthchecks that docker-compose.yml gives them, read from the file and
interpolated as Compose does. Only what Docker would provide differs: the database and Redis
addresses (the pytest-django test database and a private redis-server), the port, and a TMPDIR
of the test's own. A signed gridX event sent to the web process must reach a subscriber in
this test with a valid Standard Webhooks signature, so anything that breaks the shipped stack
fails here.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from receivers.providers import get_provider
from receivers.tests.factories import SecretFactory, make_source
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import TestReceiver
from tests.reliability.processes import Redis, database_url, free_port

from . import compose

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
]

SERVICES = ("web", "worker", "worker-high", "beat")
OPENVOLT_TOKEN = "ovt_" + "Zq9" * 8


@pytest.fixture(scope="module")
def production_venv(tmp_path_factory) -> Path:
    """A new virtualenv of the Python running the suite, with requirements.txt alone."""
    venv = tmp_path_factory.mktemp("production") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=compose.ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, f"pip install -r requirements.txt failed:\n{installed.stderr}"
    for step in compose.image_build_steps():  # collectstatic, as the image's build runs it
        built = subprocess.run(
            ["sh", "-c", step],
            cwd=compose.ROOT,
            env={
                **compose.image_environment(),
                "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "HOME": str(venv.parent),
                "LANG": "C.UTF-8",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert built.returncode == 0, f"the image's step {step!r} failed:\n{built.stderr}"
    return venv


class Stack:
    """The compose services as processes on this machine."""

    def __init__(self, venv: Path, redis: Redis, logs: Path):
        self.logs = logs
        self.port = free_port()
        # What an operator puts in .env; everything else takes the file's defaults.
        spec = compose.load(
            {
                "SECRET_KEY": secrets.token_urlsafe(40),
                # The test's own keys: this process creates the secrets the web process reads.
                "HUB_SECRET_KEYS": ",".join(settings.HUB_SECRET_KEYS),
                "HUB_ALLOW_PRIVATE_TARGETS": "1",
            }
        )
        self.services = spec["services"]
        base = {
            **compose.image_environment(),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(logs),
            "LANG": "C.UTF-8",
        }
        self.env = {
            name: {
                **base,
                **compose.environment(self.services[name]),
                "DATABASE_URL": database_url(),
                "CELERY_BROKER_URL": redis.url,
                "PORT": str(self.port),
                "TMPDIR": str(logs),
            }
            for name in SERVICES
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        self.processes[name] = subprocess.Popen(
            compose.command(self.services[name]),
            cwd=compose.ROOT,
            env=self.env[name],
            stdout=open(self.logs / f"{name}.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthcheck(self, name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            compose.healthcheck(self.services[name]),
            cwd=compose.ROOT,
            env=self.env[name],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"


def wait_until(condition, timeout: float, what: str, stack: Stack) -> None:
    """Until condition() is true; it may return (False, what it saw) to explain a timeout."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        stack.assert_running()
        try:
            result = condition()
        except httpx.HTTPError as exc:
            result = (False, exc)
        ok, seen = result if isinstance(result, tuple) else (result, seen)
        if ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last seen: {seen!r})")


def ready(stack: Stack) -> tuple[bool, dict]:
    answer = httpx.get(stack.url("/readyz"), timeout=10)
    return answer.status_code == 200, answer.json()


def healthy(stack: Stack, name: str) -> tuple[bool, str]:
    done = stack.healthcheck(name)
    return done.returncode == 0, done.stdout + done.stderr


def sample(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in Prometheus's text format, or None when it is not there."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}")]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_the_shipped_stack_delivers_a_signed_event(production_venv, redis, logs):
    with TestReceiver() as receiver:
        source, _ = make_source("gridx")
        openvolt = make_source("openvolt", secrets=0)[0]
        SecretFactory(source=openvolt, value=OPENVOLT_TOKEN)
        sub = SubscriptionFactory(url=receiver.url, event_types=["appliance/*"])
        stack = Stack(production_venv, redis, logs)
        try:
            for name in SERVICES:
                stack.start(name)
            wait_until(lambda: ready(stack), 120, "/readyz", stack)

            body = json.dumps(
                {
                    "id": str(uuid.uuid4()),
                    "type": "appliance/online",
                    "time": timezone.now().isoformat(),
                    "specVersion": "1.0",
                    "source": "/systems/1",
                    "data": {"applianceId": "a-1"},
                }
            ).encode()
            signed = get_provider("gridx").sign(
                body, source.secrets.first().value, source, timezone.now()
            )
            answer = httpx.post(
                stack.url(f"/hooks/{source.slug}/"),
                content=body,
                headers={**signed.headers, "content-type": "application/json"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text

            (delivered,) = receiver.wait_for(1, timeout=60)
            assert delivered.body == body
            assert Webhook(sub.secret).verify(delivered.body, delivered.headers) is not None
            assert delivered.headers["x-hub-source"] == source.slug

            for name in SERVICES:
                wait_until(
                    lambda name=name: healthy(stack, name),
                    60,
                    f"the {name} healthcheck",
                    stack,
                )
            assert httpx.get(stack.url("/healthz"), timeout=10).status_code == 200
            # The admin's styles come from the web process itself: compose has no file server.
            css = httpx.get(stack.url("/static/admin/css/base.css"), timeout=10)
            assert css.status_code == 200
            assert css.headers["content-type"].startswith("text/css")

            # Counted by one of the web processes and a worker, read back through /metrics.
            def counted() -> tuple[bool, tuple]:
                text = httpx.get(stack.url("/metrics"), timeout=10).text
                stored = sample(
                    text, "hub_events_received_total", source=source.slug, outcome="stored"
                )
                sent = sample(
                    text, "hub_delivery_attempts_total", subscription=str(sub.pk), outcome="success"
                )
                return stored == 1 and sent == 1, (stored, sent)

            wait_until(counted, 30, "the metrics of the delivered event", stack)

            # Openvolt's secret in a URL, in a malformed request line and in a valid one.
            path = f"/hooks/{openvolt.slug}/?token={OPENVOLT_TOKEN}"
            with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
                # No HTTP version: the server refuses the request line and logs it.
                conn.sendall(f"POST {path}\r\nHost: 127.0.0.1\r\n\r\n".encode())
                conn.recv(4096)
            assert httpx.post(stack.url(path), content=b"{", timeout=10).status_code == 400
            # Whatever the server logs of those lines (gunicorn logged the request line; Granian
            # has no access log unless asked), a token in a URL is masked wherever it appears.
            for name in SERVICES:
                assert OPENVOLT_TOKEN not in stack.log(name)
                assert "token=" not in stack.log(name).replace("token=****", "")
        finally:
            stack.stop()
            for name in SERVICES:
                print(f"--- {name}.log (tail)\n{stack.log(name)[-4000:]}")
