"""What the hub's processes share through the database: heartbeats and metric totals."""

from django.db import models


class Heartbeat(models.Model):
    """The last sign of life of a process or a schedule, read by /readyz and the healthchecks.

    Names: `worker@<host>` (a Celery worker, every HUB_SWEEP_SECONDS), `beat@<host>` (beat
    sent the sweep) and `beat-sweep` (a worker ran a sweep that beat sent)."""

    name = models.CharField(max_length=200, unique=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"


class MetricTotal(models.Model):
    """One counter or histogram sample, added to by every process (hub/metrics.py)."""

    metric = models.CharField(max_length=100)
    # The label values as a JSON array, in the order the metric declares its labels.
    labels = models.CharField(max_length=1000)
    # "" for a counter; "sum" or a bucket's upper bound for a histogram.
    part = models.CharField(max_length=20, blank=True)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "labels", "part"], name="metric_total_key")
        ]

    def __str__(self) -> str:
        return f"{self.metric}{self.labels}{self.part} = {self.value}"
