"""Alembic environment: migrations always run on the connection `migrate()` hands over."""

from alembic import context

from cds_service.governance.models import Base

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,
)
with context.begin_transaction():
    context.run_migrations()
