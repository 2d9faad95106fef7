"""Per-schema Alembic: each service migrates only its own schema, with its version table in it.

A service's `migrations/env.py` calls `run_env(metadata)`. `python -m dripiq_common.migrations
[SERVICE...]` is the one command that applies migrations: `make migrate` runs it from .venv, and
the migration Jobs run it in each service's image (which holds this library and no dev tools).
Code that migrates a server it started (`make run`, the tests) calls `upgrade`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
from importlib import resources

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import create_async_engine

from dripiq_common.db import async_url, connect_args
from dripiq_common.db_roles import app_role, grant_app_role

SERVICES = ("planner", "dispatcher", "events", "scheduler")


def alembic_config(service: str, database_url: str) -> Config:
    package = f"dripiq_{service}"
    importlib.import_module(package)
    config = Config()
    config.set_main_option("script_location", str(resources.files(package) / "migrations"))
    config.set_main_option("sqlalchemy.url", async_url(database_url))
    config.attributes["schema"] = service
    return config


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def run_env(metadata: MetaData) -> None:
    """Body of every service's env.py (online mode only: migrations need a server)."""
    config = context.config
    schema = config.attributes.get("schema") or metadata.schema
    if not schema:
        raise RuntimeError("a service's migrations need its schema (MetaData(schema=...))")
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic config has no sqlalchemy.url")

    def only_this_schema(name, type_, parent_names) -> bool:
        # Autogenerate compares this service's schema and nothing else (rule 1).
        return name == schema if type_ == "schema" else True

    def migrate(connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=only_this_schema,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        # The Job's own TLS mode to PostgreSQL (DB_SSLMODE, as the services read it).
        engine = create_async_engine(
            url,
            connect_args=connect_args(application_name=f"migrate-{schema}", sslmode=os.environ.get("DB_SSLMODE", "")),
        )
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        async with engine.connect() as conn:
            await conn.run_sync(migrate)
            await conn.commit()
        async with engine.begin() as conn:
            # The app role its processes connect as (dripiq_common.db_roles), when it exists.
            await grant_app_role(conn, schema, app_role(schema))
        await engine.dispose()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_common.migrations", description="Apply service migrations to DATABASE_URL"
    )
    parser.add_argument("services", nargs="*", default=list(SERVICES), help=f"default: all ({', '.join(SERVICES)})")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    parser.add_argument("--revision", default="head")
    args = parser.parse_args(argv)
    unknown = [service for service in args.services if service not in SERVICES]
    if unknown:
        raise SystemExit(f"unknown service {unknown[0]!r}; expected one of {', '.join(SERVICES)}")
    if not args.database_url:
        raise SystemExit("DATABASE_URL is not set (or pass --database-url)")
    for service in args.services:
        upgrade(service, args.database_url, args.revision)
        print(f"{service}: migrated to {args.revision}")


if __name__ == "__main__":
    main()
