# API tokens made by DRF's authtoken (stored in clear) become knox tokens (stored as digests):
# the same token keeps working, and the plaintext rows are deleted.

from django.conf import settings
from django.db import migrations

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")  # noqa: S608
        for key, user_id, created in cursor.fetchall():
            digest = hash_token(key)
            token = AuthToken(digest=digest, token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH])
            token.user_id = user_id
            AuthToken.objects.bulk_create([token])
            AuthToken.objects.filter(digest=digest).update(created=created)
        cursor.execute(f"DELETE FROM {LEGACY_TABLE}")  # noqa: S608


class Migration(migrations.Migration):

    dependencies = [
        ("hub", "0001_heartbeat_and_metrics"),
        ("knox", "0009_extend_authtoken_field"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
