"""What counting costs the receive path: `python bench/metrics_cost.py` (not part of run.py).

Times, with timeit, the calls receivers/services.py makes once per request (metrics.stored,
metrics.rejected, and refusals.refuse for a refused one: its record, within the cap or over
it) and the histogram a delivery adds, against an empty statement.
"""

import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings_test")

import django  # noqa: E402

django.setup()

from receivers import metrics, refusals  # noqa: E402
from subscriptions import metrics as delivery_metrics  # noqa: E402

CALLS = {
    "stored (each stored event)": lambda: metrics.stored("gridx-prod", duplicate=False),
    "rejected (each refusal)": lambda: metrics.rejected("gridx-prod", "signature"),
    # Past the first HUB_REFUSALS_PER_MINUTE of a minute, a refusal is only counted.
    "refuse (each refused request)": lambda: refusals.refuse(
        "signature", "gridx-prod", 1, "192.0.2.7", 512
    ),
    "histogram observe (each attempt)": lambda: delivery_metrics.attempt_seconds.observe(0.04, "1"),
    "empty call": lambda: None,
}


def main(number: int = 1_000_000) -> None:
    for name, call in CALLS.items():
        best = min(timeit.repeat(call, number=number, repeat=5)) / number
        print(f"{name:36s} {best * 1e9:6.0f} ns")
    metrics.take()
    refusals.discard()


if __name__ == "__main__":
    main()
