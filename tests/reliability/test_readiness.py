"""/readyz with real processes: 503 while Redis is stopped, and once beat has stopped.

A private redis-server, gunicorn, a Celery worker and beat as separate processes (as in
docker-compose.yml), with the sweep every second: beat counts as stopped once its last sweep
is more than 3 × HUB_SWEEP_SECONDS old.
"""

import os
import signal
import time

import httpx
import pytest

from .processes import HubProcesses

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def readiness(hub: HubProcesses) -> tuple[int, dict]:
    answer = httpx.get(f"http://127.0.0.1:{hub.web_port}/readyz", timeout=15)
    return answer.status_code, answer.json()


def wait_for_readiness(hub: HubProcesses, status: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        code, seen = readiness(hub)
        if code == status:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"/readyz did not answer {status} within {timeout}s: {seen}")


def start_all(hub: HubProcesses):
    hub.start_web()
    hub.start_worker(beat=False)
    beat = hub.start_beat()
    ready = wait_for_readiness(hub, 200)
    assert set(ready["checks"].values()) == {"ok"}
    return beat


def test_readyz_is_503_while_redis_is_stopped(hub, redis):
    start_all(hub)
    redis.stop()
    body = wait_for_readiness(hub, 503, timeout=30)
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"].startswith("unavailable")
    assert body["checks"]["database"] == "ok"
    assert "127.0.0.1" not in str(body) and "redis://" not in str(body)

    redis.start()  # same port: beat and the worker reconnect by themselves
    assert wait_for_readiness(hub, 200, timeout=90)["status"] == "ready"


def test_readyz_is_503_once_beat_stops_and_an_idle_hub_is_quiet(hub, logs):
    beat = start_all(hub)
    # Idle for a few sweeps: Celery's per-task and per-send lines stay out of the logs.
    time.sleep(4)
    worker_log = (logs / "worker.log").read_text()
    beat_log = (logs / "beat.log").read_text()
    assert "succeeded in" not in worker_log and "] received" not in worker_log
    assert "Sending due task" not in beat_log
    assert "sweep found work" not in worker_log

    os.killpg(beat.pid, signal.SIGKILL)
    beat.wait(10)
    body = wait_for_readiness(hub, 503, timeout=30)
    assert body["checks"]["beat"].startswith("last sweep sent by beat")
    assert body["checks"]["broker"] == "ok"
    assert body["checks"]["workers"] == "ok"
