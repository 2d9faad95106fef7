"""Each service's migrations build exactly the tables its models describe, so code that reads
and writes through the models meets the columns, types and indexes it expects."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from dripiq_common import migrations


def _is_partition(table_name: str) -> bool:
    return table_name.endswith("_default") or "_20" in table_name


def _made_elsewhere(obj, name, type_) -> bool:  # type: ignore[no-untyped-def]
    """Alembic's own version table, and the monthly partitions with their indexes (made by the
    migrations and the partition maintainer, not described by the models)."""
    if type_ == "table":
        return name == "alembic_version" or _is_partition(name or "")
    if type_ in ("index", "unique_constraint", "foreign_key_constraint"):
        return _is_partition(obj.table.name)
    return False


@pytest.mark.parametrize("service", migrations.SERVICES)
async def test_migrated_schema_matches_the_models(engine, service):
    metadata = importlib.import_module(f"dripiq_{service}.models").metadata

    def differences(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _: name == service if type_ == "schema" else True,
                "include_object": lambda obj, name, type_, *_: not _made_elsewhere(obj, name, type_),
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        diff = await conn.run_sync(differences)
    assert diff == []


async def test_events_ingest_storage(engine):
    async with engine.connect() as conn:
        storage = await conn.scalar(
            text(
                "SELECT attstorage::text FROM pg_attribute WHERE attrelid = 'events.outbox'::regclass AND attname = 'payload'"
            )
        )
    # An engagement batch lives for milliseconds: compressing it only costs CPU.
    assert storage == "e"


async def test_every_migration_goes_down_and_up_again(postgres, database_url):
    """An operator can roll a service back to an empty schema and forward again (its own
    database here, so the shared test schema is never touched)."""
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    check = await asyncpg.connect(url)
    try:
        for service in migrations.SERVICES:
            await asyncio.to_thread(migrations.upgrade, service, url)
            await asyncio.to_thread(command.downgrade, migrations.alembic_config(service, url), "base")
            left = await check.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename <> 'alembic_version'", service
            )
            assert left == 0, f"{service}: tables left after downgrading to base"
            await asyncio.to_thread(migrations.upgrade, service, url)
            assert await check.fetchval(f'SELECT count(*) FROM "{service}".alembic_version') == 1
    finally:
        await check.close()
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
