"""Each service's migrations build exactly the tables its models describe, so code that reads
and writes through the models meets the columns, types and indexes it expects."""

from __future__ import annotations

import importlib

import pytest
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
