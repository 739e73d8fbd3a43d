"""Alembic environment: always run with a connection handed in by pki.store.schema."""

from alembic import context

from pki.store import access_models, artifact_models, http_models, models, secret_models  # noqa: F401  (registers the tables)
from sqlmodel import SQLModel

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through pki.store.engine.Store.upgrade, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
