"""Install Debian's Chromium for the browser test when it is missing and we are root.

`make test` runs this before pytest. It never fails the run: when apt is impossible it says
so, and the browser test itself decides (it fails under CI=true, skips on a laptop).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 900


def run(command: list[str]) -> bool:
    print("browser setup: $", " ".join(command), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(command, env=env, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"browser setup: {command[0]} did not finish: {exc}", flush=True)
        return False
    if result.returncode != 0:
        print(f"browser setup: exit code {result.returncode}", flush=True)
    return result.returncode == 0


def main() -> int:
    if CHROMIUM.exists():
        print(f"browser setup: {CHROMIUM} is installed")
        return 0
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"browser setup: {CHROMIUM} is missing and we are not root; not installing it")
        return 0
    if shutil.which("apt-get") is None:
        print(f"browser setup: {CHROMIUM} is missing and apt-get is not available")
        return 0
    print(f"browser setup: {CHROMIUM} is missing; installing Debian's chromium with apt-get")
    if run(["apt-get", "update"]):
        run(["apt-get", "install", "-y", "chromium"])
    if CHROMIUM.exists():
        print(f"browser setup: installed {CHROMIUM}")
    else:
        print("browser setup: chromium could not be installed; the browser test will say so")
    return 0


if __name__ == "__main__":
    sys.exit(main())
