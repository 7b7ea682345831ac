"""/healthz and /readyz in-process, the heartbeats behind them, and the healthcheck command."""

from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from hub import celery as hub_celery
from hub import health
from hub.models import Heartbeat
from tests.reliability.processes import free_port

pytestmark = pytest.mark.django_db


def alive_everywhere() -> None:
    health.beat(health.BEAT_SWEEP)
    health.beat(health.worker_name())


def test_healthz_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_is_200_when_everything_answers(client):
    alive_everywhere()
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ready",
        "checks": dict.fromkeys(["database", "migrations", "broker", "beat", "workers"], "ok"),
    }


def test_readyz_names_a_beat_and_workers_that_never_ran(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["beat"] == "no sweep sent by beat yet"
    assert checks["workers"] == "no worker heartbeat yet"
    assert checks["database"] == checks["migrations"] == "ok"


def test_readyz_is_503_when_beats_sweep_is_older_than_three_periods(client, settings):
    settings.HUB_SWEEP_SECONDS = 5
    alive_everywhere()
    Heartbeat.objects.filter(name=health.BEAT_SWEEP).update(
        at=timezone.now() - timedelta(seconds=16)
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["beat"].startswith("last sweep sent by beat 16s ago")
    Heartbeat.objects.filter(name=health.BEAT_SWEEP).update(
        at=timezone.now() - timedelta(seconds=14)
    )
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_broker_does_not_answer(client, monkeypatch):
    alive_everywhere()
    # Celery reads CELERY_BROKER_URL from the environment before its settings.
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setitem(current_app.conf, "broker_transport_options", {"max_retries": 0})
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("unavailable")


def test_readyz_is_503_when_the_database_does_not_answer(client):
    def down():
        raise OperationalError("connection to server at 10.0.0.5 failed: password=hunter2")

    with mock.patch.dict(health.CHECKS, {"database": down}):
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "unavailable (OperationalError)"
    assert checks["beat"] == "not checked: the database is unavailable"
    assert "10.0.0.5" not in response.content.decode()


def test_readyz_is_503_while_migrations_are_missing(client, monkeypatch):
    alive_everywhere()
    monkeypatch.setattr(health, "_migrated", False)
    with mock.patch.object(
        health.MigrationExecutor, "migration_plan", return_value=[("receivers", "9999")]
    ):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "1 migration(s) not applied"


def test_only_a_sweep_that_beat_sent_counts_as_beats(settings):
    sweep = SimpleNamespace(name=health.SWEEP_TASK, request=SimpleNamespace())
    hub_celery.beat_sweep_ran(sender=sweep)
    assert not Heartbeat.objects.filter(name=health.BEAT_SWEEP).exists()
    sweep.request.celery_beat_task = True
    hub_celery.beat_sweep_ran(sender=sweep)
    assert Heartbeat.objects.filter(name=health.BEAT_SWEEP).exists()


def test_beat_leaves_its_heartbeat_when_it_sends_the_sweep():
    hub_celery.beat_sent_sweep(sender=health.SWEEP_TASK, headers={})
    assert not Heartbeat.objects.filter(name=health.beat_name()).exists()
    hub_celery.beat_sent_sweep(sender=health.SWEEP_TASK, headers={"celery_beat_task": True})
    assert Heartbeat.objects.filter(name=health.beat_name()).exists()


def test_the_healthcheck_command_reads_this_hosts_heartbeat():
    with pytest.raises(CommandError, match="no heartbeat of worker@"):
        call_command("healthcheck", "worker")
    health.beat(health.worker_name())
    call_command("healthcheck", "worker")
    Heartbeat.objects.update(at=timezone.now() - timedelta(minutes=5))
    with pytest.raises(CommandError, match="ago"):
        call_command("healthcheck", "worker")


def test_the_healthcheck_command_probes_the_web_port(monkeypatch):
    monkeypatch.setenv("PORT", str(free_port()))
    with pytest.raises(CommandError, match="did not answer"):
        call_command("healthcheck", "web")
