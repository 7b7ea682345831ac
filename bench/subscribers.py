"""The fan-out's subscribers as the bench drives them: bench/target.py in its own process,
with URLs for the three subscriptions a, b and c, and its recorded arrivals."""

from __future__ import annotations

import time

from bench import procs
from bench.common import BENCH, PYTHON, REPO, Config, get_json

NAMES = ("a", "b", "c")


class Target:
    """The subscriber process: /ok/<name> answers 200 at once, /hang/<name> never answers."""

    def __init__(self, cfg: Config):
        self.port = procs.free_port()
        self.proc = procs.Proc(
            "target",
            [str(PYTHON), str(BENCH / "target.py"), "--port", str(self.port)],
            env={"PATH": "/usr/bin:/bin"},
            cwd=REPO,
            log_dir=cfg.run_dir / "logs",
        )
        self.base = f"http://127.0.0.1:{self.port}"
        procs.wait_http(self.base + "/_stats", self.proc)

    def urls(self, hang: str | None = None) -> dict[str, str]:
        return {name: f"{self.base}/{'hang' if name == hang else 'ok'}/{name}" for name in NAMES}

    def reset(self) -> None:
        get_json(self.base + "/_reset", method="POST")

    def stats(self) -> dict:
        return get_json(self.base + "/_stats")

    def dump(self) -> list:
        return get_json(self.base + "/_dump", timeout=120)

    def wait_for(self, expected: int, names: tuple[str, ...], stall: float, limit: float):
        """Until `expected` arrivals at `names`, no progress for `stall` s, or `limit` s."""
        started = last_change = time.monotonic()
        seen = -1
        while True:
            counts = self.stats()["counts"]
            got = sum(counts.get(name, 0) for name in names)
            now = time.monotonic()
            if got >= expected:
                return got, True
            if got != seen:
                seen, last_change = got, now
            if now - last_change > stall or now - started > limit:
                return got, False
            time.sleep(0.1)
