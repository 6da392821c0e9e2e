"""The flow store's tables, made by the flow store's own Alembic revisions.

One definition of the schema serves both routes: ``manage.py migrate`` runs the store's
Alembic migrations (up to their head, on the database being migrated), so its tables are
exactly those ``adf db upgrade`` creates, ``adf_alembic_version`` included (running either
afterwards finds the schema current). The models below are unmanaged: Django records them
in its state only, for the admin.
"""

import active_data_flow.contrib.django.models
from django.db import migrations, models


def upgrade_store(apps, schema_editor):
    from active_data_flow.contrib.django.migrations import store_upgrade

    store_upgrade(schema_editor.connection.alias, "adf0004")


def downgrade_store(apps, schema_editor):
    from active_data_flow.contrib.django.migrations import store_downgrade

    store_downgrade(schema_editor.connection.alias)


class Migration(migrations.Migration):
    initial = True
    # Alembic works on a connection of its own: no Django transaction may hold locks meanwhile.
    atomic = False

    dependencies = []

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(upgrade_store, downgrade_store)],
            state_operations=[
        migrations.CreateModel(
            name='DeadLetter',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('flow', models.CharField(max_length=200)),
                ('run_id', models.BigIntegerField(blank=True, null=True)),
                ('position', active_data_flow.contrib.django.models.StoreJSONField(blank=True, null=True)),
                ('error_type', models.CharField(blank=True, max_length=200, null=True)),
                ('error', models.TextField(blank=True, null=True)),
                ('message', active_data_flow.contrib.django.models.StoreJSONField()),
                ('meta', active_data_flow.contrib.django.models.StoreJSONField(blank=True, null=True)),
                ('failed_at', models.DateTimeField()),
                ('replayed_at', models.DateTimeField(blank=True, null=True)),
                ('replay_error', models.TextField(blank=True, null=True)),
                ('replay_attempts', models.IntegerField(default=0)),
            ],
            options={
                'db_table': 'adf_dead_letters',
                'ordering': ('-id',),
                'permissions': (('replay_deadletter', 'Can replay dead letters'),),
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='Flow',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=200, unique=True)),
                ('origin', models.CharField(max_length=8)),
                ('status', models.CharField(max_length=16)),
                ('spec', active_data_flow.contrib.django.models.StoreJSONField()),
                ('spec_hash', models.CharField(max_length=64)),
                ('cursor', active_data_flow.contrib.django.models.StoreJSONField(blank=True, null=True)),
                ('cursor_updated_at', models.DateTimeField(blank=True, null=True)),
                ('rerun_requested', models.BooleanField(default=False)),
                ('last_run_id', models.BigIntegerField(blank=True, null=True)),
                ('last_run_status', models.CharField(blank=True, max_length=16, null=True)),
                ('last_run_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.TextField(blank=True, null=True)),
                ('code_error', models.TextField(blank=True, null=True)),
                ('created_at', models.DateTimeField()),
                ('updated_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'adf_flows',
                'ordering': ('name',),
                'permissions': (('run_flow', 'Can run a flow now'), ('pause_flow', 'Can pause and resume a flow'), ('reset_cursor', "Can reset a flow's cursor")),
                'managed': False,
            },
        ),
        migrations.CreateModel(
            name='Run',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('status', models.CharField(max_length=16)),
                ('trigger', models.CharField(max_length=16)),
                ('due_at', models.DateTimeField()),
                ('worker_id', models.CharField(blank=True, max_length=200, null=True)),
                ('attempt', models.IntegerField(default=0)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('read', models.IntegerField(default=0)),
                ('written', models.IntegerField(default=0)),
                ('skipped', models.IntegerField(default=0)),
                ('failed', models.IntegerField(default=0)),
                ('batches', models.IntegerField(default=0)),
                ('duration_s', models.FloatField(blank=True, null=True)),
                ('cursor_start', active_data_flow.contrib.django.models.StoreJSONField(blank=True, null=True)),
                ('cursor_end', active_data_flow.contrib.django.models.StoreJSONField(blank=True, null=True)),
                ('error_type', models.CharField(blank=True, max_length=200, null=True)),
                ('error', models.TextField(blank=True, null=True)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'adf_runs',
                'ordering': ('-id',),
                'managed': False,
            },
        ),
                ],
        ),
    ]
