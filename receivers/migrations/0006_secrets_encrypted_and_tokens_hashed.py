# Source secrets at rest: HMAC keys encrypted with HUB_SECRET_KEYS, and the tokens of providers
# that only compare what the platform sends (Jedlix, Openvolt) kept as digests, encrypted too.
# Existing plaintext rows are converted here; the masked hint is computed before.

from django.db import migrations, models

import receivers.encryption


def protect_secrets(apps, schema_editor):
    from receivers.encryption import encrypt
    from receivers.models import mask
    from receivers.providers import PROVIDERS

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT k.id, k.value, s.provider FROM receivers_sourcesecret k"
            " JOIN receivers_source s ON s.id = k.source_id"
        )
        rows = cursor.fetchall()
        for pk, value, provider in rows:
            found = PROVIDERS.get(provider)
            stored = found.stored_secret(value) if found else value
            cursor.execute(
                "UPDATE receivers_sourcesecret SET value = %s, masked = %s WHERE id = %s",
                [encrypt(stored), mask(value), pk],
            )


def reveal_secrets(apps, schema_editor):
    # Keys come back in clear; a token's digest stays a digest (the token is gone for good).
    from receivers.encryption import decrypt

    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT id, value FROM receivers_sourcesecret")
        for pk, value in cursor.fetchall():
            cursor.execute(
                "UPDATE receivers_sourcesecret SET value = %s WHERE id = %s", [decrypt(value), pk]
            )


class Migration(migrations.Migration):

    dependencies = [
        ('receivers', '0005_seen_event_ledger'),
    ]

    operations = [
        migrations.AddField(
            model_name='sourcesecret',
            name='masked',
            field=models.CharField(default='****', editable=False, max_length=8),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name='sourcesecret',
            name='value',
            field=receivers.encryption.EncryptedTextField(),
        ),
        migrations.RunPython(protect_secrets, reveal_secrets),
    ]
