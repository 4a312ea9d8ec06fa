"""Alembic environment: runs on the connection handed over by storage.upgrade."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import storage._models  # noqa: F401  registers the tables on SQLModel.metadata
from storage import (
    _evaluation_models,  # noqa: F401  the evaluation tables
    _routing_models,  # noqa: F401  the alias routing tables
    _training_models,  # noqa: F401  the training tables
)

target_metadata = SQLModel.metadata
config = context.config

connection = config.attributes.get("connection")
if connection is None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
