"""Payload search (receivers/payload_search.py): a GIN index for JSON containment, PostgreSQL only.

Not in Event.Meta.indexes: SQLite cannot build a GIN index, and Django would try to whenever it
rebuilds the table. Built CONCURRENTLY so that receiving goes on while a big table is indexed.
"""

from django.db import migrations

CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS event_payload_idx "
    "ON receivers_event USING gin (payload jsonb_path_ops)"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS event_payload_idx"


def on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("receivers", "0007_source_expected_interval_and_refusals"),
    ]

    operations = [
        migrations.RunPython(on_postgresql(CREATE), on_postgresql(DROP), elidable=False),
    ]
