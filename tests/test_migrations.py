"""The migrations build the whole schema, remove it again, and agree with the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect

from florent.config import sqlalchemy_url
from florent.extensions import db

from .conftest import fresh_database


def test_models_and_migrations_agree(app):
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            ),
            db.metadata,
        )
    assert differences == []


def test_upgrade_builds_everything_and_downgrade_base_removes_it(server_url, make_app):
    url = fresh_database(server_url, "florent_migrations")
    app = make_app(None, database_url=url)
    engine = create_engine(sqlalchemy_url(url))
    try:
        with app.app_context():
            upgrade()
            tables = set(inspect(engine).get_table_names())
            assert set(db.metadata.tables) <= tables
            downgrade(revision="base")
            assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
            upgrade()
            assert set(db.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
