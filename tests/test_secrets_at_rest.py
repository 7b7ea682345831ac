"""Secrets at rest: HMAC keys and signing secrets encrypted with HUB_SECRET_KEYS (rotation and a
re-encrypting command), Jedlix and Openvolt tokens kept as digests, plaintext rows converted by
the migrations, and the receive path decrypting once per cache fill, never per request."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from receivers import lookup
from receivers.encryption import decrypt
from receivers.lookup import forget_sources
from receivers.models import Event, SourceSecret
from receivers.providers.base import token_digest
from receivers.tests.factories import make_source
from receivers.tests.webhooks import fixture_of, gridx_body, post, sign
from subscriptions.models import Subscription
from subscriptions.tests.factories import SubscriptionFactory

ROOT = Path(__file__).resolve().parents[1]


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_hmac_keys_and_signing_secrets_are_encrypted_in_the_database():
    source, (key,) = make_source("gridx")
    stored = raw("receivers_sourcesecret", "value", source.secrets.get().pk)
    assert key not in stored and decrypt(stored) == key
    sub = SubscriptionFactory(previous_secret="whsec_cHJldmlvdXMtc2VjcmV0LXZhbHVl")
    for column, value in [("secret", sub.secret), ("previous_secret", sub.previous_secret)]:
        stored = raw("subscriptions_subscription", column, sub.pk)
        assert value not in stored and decrypt(stored) == value


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["jedlix", "openvolt"])
def test_tokens_compared_for_equality_are_kept_as_digests(client, provider):
    source, (token,) = make_source(provider)
    stored = decrypt(raw("receivers_sourcesecret", "value", source.secrets.get().pk))
    assert stored == token_digest(token) and token not in stored
    body = fixture_of(provider)
    assert post(client, source, body, sign(source, body, token)).status_code == 200
    assert post(client, source, body, sign(source, body, stored)).status_code == 401


OLD_KEY = settings.HUB_SECRET_KEYS[0]
NEW_KEY = Fernet.generate_key().decode()


@pytest.mark.django_db
def test_a_new_first_key_decrypts_nothing_alone_until_the_command_reencrypts(client):
    source, (key,) = make_source("gridx")
    sub = SubscriptionFactory()
    signing = sub.secret
    with override_settings(HUB_SECRET_KEYS=[NEW_KEY, OLD_KEY]):
        assert SourceSecret.objects.get().value == key  # the old key still decrypts
        out = StringIO()
        call_command("reencrypt_secrets", stdout=out)
        assert "1 secret(s) re-encrypted" in out.getvalue()
        assert "Every secret is encrypted with the first key." in out.getvalue()
    with override_settings(HUB_SECRET_KEYS=[NEW_KEY]):
        forget_sources()
        assert SourceSecret.objects.get().value == key
        assert Subscription.objects.get().secret == signing
        body = gridx_body()
        assert post(client, source, body, sign(source, body, key)).status_code == 200
        again = StringIO()
        call_command("reencrypt_secrets", stdout=again)
        assert "0 secret(s) re-encrypted" in again.getvalue()


@pytest.mark.django_db
def test_a_secret_no_key_decrypts_is_refused_and_said_loudly(client, caplog):
    source, (key,) = make_source("gridx")
    forget_sources()
    with override_settings(HUB_SECRET_KEYS=[NEW_KEY]):
        body = gridx_body()
        assert post(client, source, body, sign(source, body, key)).status_code == 401
        with pytest.raises(Exception, match="could not be decrypted"):
            call_command("reencrypt_secrets", stdout=StringIO(), stderr=StringIO())
    assert "cannot be decrypted" in caplog.text
    assert key not in caplog.text
    assert not Event.objects.exists()


@pytest.mark.django_db
@override_settings(HUB_SOURCE_CACHE_SECONDS=60)
def test_the_receive_path_decrypts_once_per_cache_fill(client, monkeypatch):
    source, (key,) = make_source("gridx")
    forget_sources()
    calls = []
    real = lookup.decrypt
    monkeypatch.setattr(lookup, "decrypt", lambda token: calls.append(1) or real(token))
    for number in range(3):
        body = gridx_body(id=f"evt-{number}")
        assert post(client, source, body, sign(source, body, key)).status_code == 200
    assert len(calls) == 1


def settings_process(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"HUB_SECRET_KEYS", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "hub.settings", "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_keys_refuses_to_start():
    refused = settings_process(DEBUG="0")
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "HUB_SECRET_KEYS" in refused.stderr
    bad = settings_process(DEBUG="0", HUB_SECRET_KEYS="not-a-key")
    assert bad.returncode != 0 and "not a Fernet key" in bad.stderr
    assert settings_process(DEBUG="1").returncode == 0  # `make run`: derived from SECRET_KEY


# The migrations convert rows stored in plaintext ------------------------------------------

BEFORE = [
    ("receivers", "0005_seen_event_ledger"),
    ("subscriptions", "0005_event_types_and_headers_validators"),
]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_migrations_convert_plaintext_rows():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO receivers_source (slug, provider, is_active, description, allowed_ips,"
            " verify_nothing, tolerance_seconds, hmac_header, hmac_algorithm, hmac_encoding,"
            " hmac_prefix, hmac_template, hmac_timestamp_header, created_at, updated_at) VALUES"
            " ('old-gridx', 'gridx', true, '', '', false, 300, '', 'sha256', 'hex', '',"
            " '{body}', '', now(), now()),"
            " ('old-jedlix', 'jedlix', true, '', '', false, 300, '', 'sha256', 'hex', '',"
            " '{body}', '', now(), now())"
        )
        cursor.execute(
            "INSERT INTO receivers_sourcesecret (source_id, value, created_at)"
            " SELECT id, CASE slug WHEN 'old-gridx' THEN 'whsec_plain-gridx-key-0001'"
            " ELSE 'plain-jedlix-api-key-0001' END, now() FROM receivers_source"
        )
        cursor.execute(
            "INSERT INTO subscriptions_subscription (name, url, is_active, is_paused,"
            " event_types, secret, previous_secret, headers, timeout_seconds, payload_format,"
            " created_at, consecutive_failures, disabled_reason) VALUES ('old', 'http://x.test/',"
            " true, false, '[\"*\"]', 'whsec_plain-signing-secret', '', '{}', 15, 'original',"
            " now(), 0, '')"
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    gridx = SourceSecret.objects.get(source__slug="old-gridx")
    jedlix = SourceSecret.objects.get(source__slug="old-jedlix")
    assert gridx.value == "whsec_plain-gridx-key-0001" and gridx.masked == "****0001"
    assert jedlix.value == token_digest("plain-jedlix-api-key-0001")
    assert "plain" not in raw("receivers_sourcesecret", "value", gridx.pk)
    assert Subscription.objects.get().secret == "whsec_plain-signing-secret"
    assert "plain" not in raw("subscriptions_subscription", "secret", Subscription.objects.get().pk)


@pytest.mark.django_db
def test_a_source_keeps_its_provider_since_its_secrets_are_stored_for_it(api, admin_client):
    api.post("/api/v1/sources/", {"slug": "grid", "provider": "gridx"}, format="json")
    answer = api.patch("/api/v1/sources/grid/", {"provider": "jedlix"}, format="json")
    assert answer.status_code == 400 and "provider" in answer.json()
    assert api.patch("/api/v1/sources/grid/", {"provider": "gridx"}, format="json").status_code
    source = SourceSecret.objects.get().source
    page = admin_client.get(f"/admin/receivers/source/{source.pk}/change/").content.decode()
    assert 'name="provider"' not in page


@pytest.mark.django_db
def test_the_source_pages_never_decrypt_a_secret(admin_client):
    source, _ = make_source("gridx")
    masked = source.secrets.get().masked
    with override_settings(HUB_SECRET_KEYS=[NEW_KEY]):
        assert admin_client.get("/admin/receivers/source/").status_code == 200
        change = admin_client.get(f"/admin/receivers/source/{source.pk}/change/")
        assert change.status_code == 200
        assert masked in change.content.decode()
