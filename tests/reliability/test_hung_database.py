"""A hung database (issue 11, item 16): with PostgreSQL stopped by SIGSTOP, webhooks are
answered 503 with Retry-After within about 5 s, and receiving resumes by itself after SIGCONT.

The database is a private PostgreSQL cluster made for this test (initdb as the postgres user,
on a free port): the shared one is never stopped. The hub is the real web server.
"""

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from conftest import missing
from receivers.providers import get_provider

from .processes import ROOT, HubProcesses, Postgres

pytestmark = pytest.mark.postgres

SECRET = "whsec_hung-database-test-secret"
# What the hub promises (about 5 s), with room for a busy machine.
ANSWER_SECONDS = 7.0

CREATE_SOURCE = f"""
from receivers.models import Source, SourceSecret
source = Source.objects.create(slug="gx", provider="gridx")
SourceSecret.objects.create(source=source, value="{SECRET}")
"""


class NoRedis:
    url = "memory://"


@pytest.fixture
def postgres(tmp_path: Path):
    if shutil.which("runuser") is None:
        missing("runuser is needed to run initdb as the postgres user")
    server = Postgres(tmp_path)
    server.create()
    yield server
    server.destroy()


@pytest.fixture
def hub(postgres, tmp_path: Path):
    processes = HubProcesses(NoRedis(), tmp_path, {"DATABASE_URL": postgres.url})
    for command in (["migrate", "--no-input", "-v0"], ["shell", "-c", CREATE_SOURCE]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=processes.env,
            check=True,
            timeout=180,
        )
    processes.start_web("--workers", "1")
    yield processes
    processes.stop()
    print("--- web.log (tail)\n" + "\n".join((tmp_path / "web.log").read_text().splitlines()[-30:]))


def send(hub: HubProcesses) -> tuple[int, dict, float]:
    body = json.dumps({"id": str(uuid.uuid4()), "type": "appliance/online", "data": {}}).encode()
    signed = get_provider("gridx").sign(body, SECRET, None, timezone.now())
    started = time.monotonic()
    try:
        response = httpx.post(
            f"{hub.receive_url}/gx/",
            content=body,
            headers={**signed.headers, "content-type": "application/json"},
            timeout=ANSWER_SECONDS + 5,
        )
    except httpx.TimeoutException:
        return 0, {}, time.monotonic() - started
    return response.status_code, dict(response.headers), time.monotonic() - started


def test_a_hung_database_gives_503_with_retry_after_and_receiving_resumes(hub, postgres):
    assert send(hub)[0] == 200

    postgres.freeze()  # SIGSTOP to every process of the cluster: connections stay open
    try:
        answers = []
        senders = [threading.Thread(target=lambda: answers.append(send(hub))) for _ in range(3)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        answers.append(send(hub))  # and one more, while the first batch still hangs
    finally:
        postgres.thaw()

    for status, headers, seconds in answers:
        assert status == 503, (status, seconds)
        assert int(headers["retry-after"]) > 0
        assert seconds < ANSWER_SECONDS
    deadline = time.monotonic() + 30
    while (status := send(hub)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200, "receiving did not resume after the database came back"
