"""The HTTP inbox table (the store's Alembic revision ``adf0005``).

Each Django migration of this app applies the store's Alembic revisions up to a fixed one, so
a project that migrated before a new revision existed gets it from the next migration.
"""

from django.db import migrations


def upgrade_store(apps, schema_editor):
    from active_data_flow.contrib.django.migrations import store_upgrade

    store_upgrade(schema_editor.connection.alias, "adf0005")


def downgrade_store(apps, schema_editor):
    from active_data_flow.contrib.django.migrations import store_downgrade

    store_downgrade(schema_editor.connection.alias, "adf0004")


class Migration(migrations.Migration):
    # Alembic works on a connection of its own: no Django transaction may hold locks meanwhile.
    atomic = False

    dependencies = [("active_data_flow", "0001_flow_store")]

    operations = [migrations.RunPython(upgrade_store, downgrade_store)]
