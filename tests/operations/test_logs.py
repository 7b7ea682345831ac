"""Logs: JSON lines on request, the sweep quiet when idle, and secrets masked in every logger."""

import io
import json
import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from hub.log_filters import mask_every_record
from receivers.tests.factories import EventFactory
from subscriptions.services import drain, fanout, sweep
from subscriptions.tests.factories import SubscriptionFactory
from subscriptions.tests.receiver import Answer, TestReceiver
from tests.reliability.processes import ROOT

SECRET = "ovt_Zz9-masked-in-every-logger"

LOG_FROM_DJANGO = """
import django, logging
django.setup()
logging.getLogger("subscriptions.delivery").warning(
    "delivery %s failed", 7, extra={"event_id": 3, "source": "gridx-1", "subscription": 2,
                                    "delivery_id": 7})
logging.getLogger("gunicorn.error").warning("Bad request line: 'POST /hooks/ov/?token=SECRET'")
try:
    raise ValueError("/hooks/ov/?token=SECRET")
except ValueError:
    logging.getLogger("uvicorn.error").exception("failed")
"""


def run_logging(log_format: str) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "SECRET_KEY": "log-test",
        "HUB_LOG_FORMAT": log_format,
    }
    done = subprocess.run(
        [sys.executable, "-c", LOG_FROM_DJANGO.replace("SECRET", SECRET)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_json_format_gives_one_object_per_line_with_the_ids():
    lines = run_logging("json")
    records = [json.loads(line) for line in lines]
    delivery = records[0]
    assert delivery["message"] == "delivery 7 failed"
    assert delivery["level"] == "WARNING" and delivery["logger"] == "subscriptions.delivery"
    assert (delivery["event_id"], delivery["source"]) == (3, "gridx-1")
    assert (delivery["subscription"], delivery["delivery_id"]) == (2, 7)
    assert SECRET not in "\n".join(lines)
    assert "token=****" in records[1]["message"] and "token=****" in records[2]["exc_info"]


def test_plain_format_stays_the_default_and_masks_too():
    lines = run_logging("")
    assert lines[0].endswith("WARNING subscriptions.delivery delivery 7 failed")
    assert SECRET not in "\n".join(lines)
    assert "?token=****" in lines[1]


def test_a_logger_with_its_own_handler_is_masked_too():
    """What gunicorn and uvicorn do: their loggers write through handlers of their own."""
    mask_every_record()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    server_log = logging.getLogger("a-web-server.access")
    server_log.addHandler(handler)
    server_log.propagate = False
    try:
        server_log.warning('"%s" %s', f"GET /hooks/ov/?token={SECRET} HTTP/1.1", 200)
    finally:
        server_log.removeHandler(handler)
    assert stream.getvalue() == '"GET /hooks/ov/?token=**** HTTP/1.1" 200\n'


@pytest.mark.django_db
def test_the_sweep_logs_at_info_only_when_it_found_work(caplog):
    with caplog.at_level(logging.INFO, logger="subscriptions.services.sweep"):
        sweep.sweep()
        assert [r for r in caplog.records if r.name == "subscriptions.services.sweep"] == []
        EventFactory(received_at=timezone.now() - timedelta(minutes=1))
        sweep.sweep()
    (found,) = [r for r in caplog.records if r.name == "subscriptions.services.sweep"]
    assert found.levelno == logging.INFO and "'stale_events': 1" in found.getMessage()


@pytest.mark.django_db
def test_a_failed_delivery_is_logged_with_its_ids(caplog):
    with TestReceiver(default=Answer(status=500)) as receiver:
        sub = SubscriptionFactory(url=receiver.url)
        event = EventFactory()
        with caplog.at_level(logging.INFO, logger="subscriptions.delivery"):
            fanout.fan_out([event.pk])
            drain.drain_subscription(sub.pk)
    (record,) = [r for r in caplog.records if r.name == "subscriptions.delivery"]
    assert record.levelno == logging.INFO and "retry (500)" in record.getMessage()
    assert (record.event_id, record.subscription, record.source) == (
        event.pk,
        sub.pk,
        event.source.slug,
    )
