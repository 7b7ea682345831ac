"""The README stays short, and its five-minute walk-through stays true: the event it signs with
openssl is accepted, and its subscriber, run as written, verifies the hub's delivery."""

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_BYTES = 10_000


def walkthrough() -> str:
    text = README.read_text()
    return text[text.index("## Five minutes") :].split("\n## ", 1)[0]


def block(language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", walkthrough(), re.S)
    return found


def shell_value(name: str) -> str:
    """A plain `NAME=value` assignment of the walk-through's shell block."""
    (value,) = re.findall(rf"^{name}=(\S+)", block("sh"), re.M)
    return value


def signed_body(secret: str) -> tuple[str, str]:
    """The walk-through's BODY and SIG lines, run by bash and openssl as a reader would."""
    lines = [line for line in block("sh").splitlines() if line.startswith(("BODY=", "SIG="))]
    script = "\n".join([f"SECRET={secret}", *lines, 'printf "%s\\n%s" "$BODY" "$SIG"'])
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    body, signature = result.stdout.split("\n")
    return body, signature


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"subscriber.py ended: {process.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("subscriber.py never listened")


def test_the_readme_stays_under_ten_kilobytes():
    assert len(README.read_bytes()) <= MAX_BYTES


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the walk-through uses openssl")
def test_the_walkthrough_runs_as_written(api, client, tmp_path, django_capture_on_commit_callbacks):
    secret = shell_value("SECRET")
    signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # as `openssl rand -base64 24` makes one
    port = free_port()
    script = tmp_path / "subscriber.py"
    script.write_text(block("python").replace("9000", str(port)))
    subscriber = subprocess.Popen(
        [sys.executable, str(script)],
        env={"SIGNING": signing, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, subscriber)
        source = {"slug": "gridx-home", "provider": "gridx", "secrets": [secret]}
        assert api.post("/api/v1/sources/", source, format="json").status_code == 201
        subscription = {
            "name": "demo",
            "event_types": ["*"],
            "url": f"http://127.0.0.1:{port}/",
            "secret": signing,
        }
        assert api.post("/api/v1/subscriptions/", subscription, format="json").status_code == 201
        body, signature = signed_body(secret)
        # The fan-out wakes the drain when its transaction commits: inside the test's, now.
        with django_capture_on_commit_callbacks(execute=True):
            answer = client.post(
                "/hooks/gridx-home/",
                body,
                content_type="application/json",
                HTTP_X_SIGNATURE=f"sha512={signature}",
            )
        assert answer.status_code == 200 and answer.json()["received"] is True
        (delivery,) = api.get("/api/v1/deliveries/").json()["results"]
        assert delivery["status"] == "succeeded"
    finally:
        subscriber.terminate()
        output, errors = subscriber.communicate(timeout=10)
    assert f"verified {delivery['webhook_id']} appliance/online" in output, errors
