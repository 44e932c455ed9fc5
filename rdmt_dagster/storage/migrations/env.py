"""Alembic environment: runs on the connection handed over by `Database.upgrade`.

The revision is kept in ``rdmt_alembic_version``, not Alembic's default
table, so that the RDMT tables can share a database with Dagster's own
storage (which keeps its revisions in ``alembic_version``).
"""

from alembic import context

from rdmt_dagster.storage.tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
