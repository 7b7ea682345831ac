"""The one fake subscriber for tests: a real local HTTP server that records every request and
answers as scripted. (A support module: the `receiver` fixture in conftest.py starts one.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def json(cls, status: int) -> Answer:
        """`{"ok": <2xx>, "status": <status>}`, as a JSON API would answer."""
        body = json.dumps({"ok": status < 300, "status": status}).encode()
        return cls(status, body, {"content-type": "application/json"})


class TestReceiver:
    """`answers` is consumed in order; after it runs out every request gets `default`.
    `script`, when set, may choose the answer to a request instead (None: as above). `port` 0
    picks a free one."""

    __test__ = False

    def __init__(self, default: Answer | None = None, port: int = 0):
        self.requests: list[Received] = []
        self.answers: list[Answer] = []
        self.default = default or Answer()
        self.lock = threading.Lock()
        self.on_request: Callable[[Received], None] | None = None
        self.script: Callable[[Received], Answer | None] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                got = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                with receiver.lock:
                    receiver.requests.append(got)
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                    if receiver.script is not None:
                        answer = receiver.script(got) or answer
                if receiver.on_request:
                    receiver.on_request(got)
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> TestReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
