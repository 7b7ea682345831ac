# Signing secrets at rest: encrypted with HUB_SECRET_KEYS. Existing plaintext rows are converted.

from django.db import migrations

import receivers.encryption
import subscriptions.models



def convert(transform):
    def run(apps, schema_editor):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT id, secret, previous_secret FROM subscriptions_subscription")
            for pk, *values in cursor.fetchall():
                new = [transform(value) if value else value for value in values]
                cursor.execute(
                    "UPDATE subscriptions_subscription SET secret = %s, previous_secret = %s"
                    " WHERE id = %s",
                    [*new, pk],
                )

    return run


def encrypt(value):
    return receivers.encryption.encrypt(value)


def decrypt(value):
    return receivers.encryption.decrypt(value)


class Migration(migrations.Migration):

    dependencies = [
        ('receivers', '0006_secrets_encrypted_and_tokens_hashed'),
        ('subscriptions', '0005_event_types_and_headers_validators'),
    ]

    operations = [
        migrations.AlterField(
            model_name='subscription',
            name='secret',
            field=receivers.encryption.EncryptedTextField(default=subscriptions.models.generate_signing_secret),
        ),
        migrations.AlterField(
            model_name='subscription',
            name='previous_secret',
            field=receivers.encryption.EncryptedTextField(blank=True),
        ),
        migrations.RunPython(convert(encrypt), convert(decrypt)),
    ]
