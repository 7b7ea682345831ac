"""`make run`: the web server, a Celery worker and beat together, stopped together."""

import signal
import subprocess
import sys
import time


def main(host_port: str, schedule: str) -> int:
    python = sys.executable
    bin_dir = python.rsplit("/", 1)[0]
    celery = [f"{bin_dir}/celery", "-A", "hub"]
    # beat is a process of its own, as in docker-compose.yml: forked inside the worker
    # (`worker --beat`) it would inherit the worker's open database file.
    children = [
        subprocess.Popen([*celery, "worker", "--concurrency", "8", "--loglevel", "INFO"]),
        subprocess.Popen([*celery, "beat", "--loglevel", "INFO", "--schedule", schedule]),
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
