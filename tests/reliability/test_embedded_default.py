"""`make run`'s embedded default (SQLite, kombu's filesystem broker) answers /readyz too.

scripts/run_dev.py as `make run` starts it (runserver, and a worker with beat inside), with
nothing but a folder: no PostgreSQL, no Redis.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .processes import ROOT, free_port, wait_port


def test_readyz_is_200_with_sqlite_and_the_filesystem_broker(tmp_path: Path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(
        SECRET_KEY="embedded-test-key",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        HUB_FILESYSTEM_BROKER_DIR=str(tmp_path / "broker"),
        HUB_SWEEP_SECONDS="1",
    )
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--no-input"], cwd=ROOT, env=env, check=True)
    log = open(tmp_path / "run.log", "ab")
    run = subprocess.Popen(
        [python, "scripts/run_dev.py", f"127.0.0.1:{port}", str(tmp_path / "schedule")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_port(port, timeout=60)
        deadline, seen = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            seen = answer.json()
            if answer.status_code == 200:
                break
            time.sleep(0.5)
        assert seen == {
            "status": "ready",
            "checks": dict.fromkeys(["database", "migrations", "broker", "beat", "workers"], "ok"),
        }
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
        print((tmp_path / "run.log").read_text()[-3000:])
