# The ledger of purged event ids, and the trigger that makes a replay of one a duplicate.

import django.db.models.deletion
from django.db import migrations, models

# Table names as Django derives them for Event and SeenEvent.
POSTGRESQL_TRIGGER = """
CREATE FUNCTION receivers_event_seen_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM receivers_seenevent
        WHERE source_id = NEW.source_id AND external_id = NEW.external_id
    ) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER receivers_event_seen_before BEFORE INSERT ON receivers_event
    FOR EACH ROW EXECUTE FUNCTION receivers_event_seen_before();
"""
POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS receivers_event_seen_before ON receivers_event;
DROP FUNCTION IF EXISTS receivers_event_seen_before();
"""
SQLITE_TRIGGER = """
CREATE TRIGGER receivers_event_seen_before BEFORE INSERT ON receivers_event
WHEN EXISTS (
    SELECT 1 FROM receivers_seenevent
    WHERE source_id = NEW.source_id AND external_id = NEW.external_id
)
BEGIN SELECT RAISE(IGNORE); END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS receivers_event_seen_before;"


def run(statements: dict):
    def apply(apps, schema_editor):
        sql = statements.get(schema_editor.connection.vendor)
        if sql is None:
            raise NotImplementedError(
                f"No replay-ledger trigger for {schema_editor.connection.vendor}."
            )
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(sql)

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ('receivers', '0004_source_provider_choices_from_registry'),
    ]

    operations = [
        migrations.CreateModel(
            name='SeenEvent',
            fields=[
                ('pk', models.CompositePrimaryKey('source', 'external_id', blank=True, editable=False, primary_key=True, serialize=False)),
                ('external_id', models.CharField(max_length=255)),
                ('received_at', models.DateTimeField()),
                ('source', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, to='receivers.source')),
            ],
            options={
                'indexes': [models.Index(fields=['received_at'], name='seenevent_received_idx')],
            },
        ),
        migrations.RunPython(
            run({"postgresql": POSTGRESQL_TRIGGER, "sqlite": SQLITE_TRIGGER}),
            run({"postgresql": POSTGRESQL_DROP, "sqlite": SQLITE_DROP}),
        ),
    ]
