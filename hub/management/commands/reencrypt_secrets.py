"""Re-encrypt every secret kept at rest with the first key of HUB_SECRET_KEYS.

Key rotation: put the new key first in HUB_SECRET_KEYS (keep the old ones after it), restart,
run this, then remove the old keys. Safe to run again: a secret already on the first key is
left as it is.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from receivers.encryption import EncryptedTextField, SecretUnreadable, on_first_key, reencrypted
from receivers.models import SourceSecret
from subscriptions.models import Subscription

MODELS = (SourceSecret, Subscription)
BATCH = 500
PROGRESS_SECONDS = 1.0


def encrypted_columns(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of HUB_SECRET_KEYS."

    def handle(self, *args, **options):
        unreadable = 0
        for model in MODELS:
            unreadable += self.reencrypt(model)
        if unreadable:
            raise CommandError(
                f"{unreadable} secret(s) could not be decrypted with any key of HUB_SECRET_KEYS: "
                "add the key they were encrypted with and run this again."
            )
        self.stdout.write(self.style.SUCCESS("Every secret is encrypted with the first key."))

    def reencrypt(self, model) -> int:
        """Re-encrypts one model's rows in batches, one transaction each; returns how many
        secrets no key decrypts."""
        table = connection.ops.quote_name(model._meta.db_table)
        pk = connection.ops.quote_name(model._meta.pk.column)
        columns = [connection.ops.quote_name(c) for c in encrypted_columns(model)]
        total = model.objects.count()
        label = model._meta.verbose_name_plural
        self.stdout.write(f"{label}: {total} row(s)")
        seen = moved = unreadable = 0
        last_id, last_report = None, time.monotonic()
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                after = "" if last_id is None else f" WHERE {pk} > %s"
                cursor.execute(
                    f"SELECT {pk}, {', '.join(columns)} FROM {table}{after}"  # noqa: S608
                    f" ORDER BY {pk} LIMIT {BATCH}{lock}",
                    [] if last_id is None else [last_id],
                )
                rows = cursor.fetchall()
                for row_id, *values in rows:
                    changes = self.reencrypted_values(dict(zip(columns, values, strict=True)))
                    unreadable += sum(value is None for value in changes.values())
                    changes = {column: value for column, value in changes.items() if value}
                    if changes:
                        assignments = ", ".join(f"{column} = %s" for column in changes)
                        cursor.execute(
                            f"UPDATE {table} SET {assignments} WHERE {pk} = %s",  # noqa: S608
                            [*changes.values(), row_id],
                        )
                        moved += len(changes)
            if not rows:
                break
            seen, last_id = seen + len(rows), rows[-1][0]
            if time.monotonic() - last_report >= PROGRESS_SECONDS or seen >= total:
                self.stdout.write(f"  {seen} of {total} row(s) read, {moved} secret(s) moved")
                last_report = time.monotonic()
        self.stdout.write(f"  done: {moved} secret(s) re-encrypted, {unreadable} unreadable")
        return unreadable

    def reencrypted_values(self, stored: dict[str, str]) -> dict[str, str | None]:
        """The columns to rewrite with their new value, None for one that no key decrypts."""
        changes: dict[str, str | None] = {}
        for column, value in stored.items():
            if not value or on_first_key(value):
                continue
            try:
                changes[column] = reencrypted(value)
            except SecretUnreadable:
                changes[column] = None
                self.stderr.write(f"  a secret in {column} cannot be decrypted")
        return changes
