"""`make run`: the web server and a Celery worker (with beat) together, stopped together."""

import signal
import subprocess
import sys
import time


def main(host_port: str, schedule: str) -> int:
    python = sys.executable
    bin_dir = python.rsplit("/", 1)[0]
    children = [
        subprocess.Popen(
            [
                f"{bin_dir}/celery",
                "-A",
                "hub",
                "worker",
                "--beat",
                "--concurrency",
                "8",
                "--loglevel",
                "INFO",
                "--schedule",
                schedule,
            ]
        ),
        subprocess.Popen([python, "manage.py", "runserver", host_port]),
    ]

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        stop()
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
