"""API tokens are kept as digests: the token is shown once and stored nowhere, and tokens made
before (DRF's authtoken, stored in clear) are converted by a migration and keep working."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def every_text_value() -> str:
    """Every column of every table, as text: where a leaked token would show."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            found.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(found)


def token_from_command(username: str) -> str:
    out = StringIO()
    call_command("create_api_token", username, stdout=out)
    return out.getvalue().split("(shown once): ")[1].split()[0]


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_token_is_shown_once_and_only_its_digest_is_stored():
    User.objects.create_superuser("ops", password="pw")
    token = token_from_command("ops")
    assert client_with(token).get("/api/v1/events/").status_code == 200
    assert token not in every_text_value()
    assert AuthToken.objects.get().digest != token


@pytest.mark.parametrize("bad", ["wrong", "0" * 64, "é" * 10, "a\x00b", "a b"])
def test_a_wrong_or_malformed_token_is_401(bad):
    User.objects.create_superuser("ops", password="pw")
    token_from_command("ops")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {bad}")
    assert client.get("/api/v1/events/").status_code == 401


def test_a_token_made_by_drf_authtoken_is_converted_and_keeps_working():
    user = User.objects.create_superuser("ops", password="pw")
    legacy = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp"
            " with time zone NOT NULL, user_id integer NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, CURRENT_TIMESTAMP, %s)", [legacy, user.pk]
        )
    migration = importlib.import_module("hub.migrations.0002_api_tokens_hashed")
    state = MigrationExecutor(connection).loader.project_state(("hub", "0002_api_tokens_hashed"))
    with connection.schema_editor() as editor:
        migration.hash_legacy_tokens(state.apps, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert legacy not in every_text_value()
    assert client_with(legacy).get("/api/v1/events/").status_code == 200
