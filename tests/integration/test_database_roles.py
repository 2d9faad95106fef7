"""Each service's database role, as `make run` and production set them up: its app role reads
and writes its own schema's rows and nothing else, and changes no table's shape."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest


async def connect(service_database_urls: dict[str, str], service: str) -> asyncpg.Connection:
    return await asyncpg.connect(service_database_urls[service])


async def test_the_planners_role_cannot_read_the_dispatchers_messages(service_database_urls) -> None:
    conn = await connect(service_database_urls, "planner")
    try:
        assert await conn.fetchval("SELECT count(*) FROM planner.contact_campaigns") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM dispatcher.messages LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM events.message_events LIMIT 1")
    finally:
        await conn.close()


@pytest.mark.parametrize("service", ["planner", "dispatcher", "events", "scheduler"])
async def test_an_app_role_changes_no_tables_shape(service_database_urls, service: str) -> None:
    conn = await connect(service_database_urls, service)
    try:
        table = await conn.fetchval(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> 'alembic_version' LIMIT 1",
            service,
        )
        for statement in (
            f'DROP TABLE "{service}"."{table}"',
            f'ALTER TABLE "{service}"."{table}" ADD COLUMN intruder text',
            f'CREATE TABLE "{service}".intruder (id int)',
            f'TRUNCATE "{service}"."{table}"',
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_events_role_makes_and_drops_monthly_partitions_only_through_its_owners_functions(
    service_database_urls,
) -> None:
    conn = await connect(service_database_urls, "events")
    try:
        start, end = datetime(2099, 1, 1, tzinfo=UTC), datetime(2099, 2, 1, tzinfo=UTC)
        await conn.execute("SELECT events.create_month_partition('message_events_2099_01', $1, $2)", start, end)
        # Rows go into it with the app role's rights (the owner's default privileges).
        assert await conn.fetchval("SELECT count(*) FROM events.message_events_2099_01") == 0
        with pytest.raises(asyncpg.RaiseError, match="not a monthly partition name"):
            await conn.execute("SELECT events.drop_month_partition('outbox')")
        await conn.execute("SELECT events.drop_month_partition('message_events_2099_01')")
        assert await conn.fetchval("SELECT to_regclass('events.message_events_2099_01')") is None
    finally:
        await conn.close()


async def test_the_tls_mode_to_postgresql_is_honoured(database_url) -> None:
    """The test server speaks no TLS: a mode that requires it refuses to connect rather than
    going on in plaintext, and one that allows plaintext connects."""
    from sqlalchemy import text

    from dripiq_common.db import create_engine

    # verify-full wants the CA to verify against first (PGSSLROOTCERT), and says so.
    for mode, why in (("require", "(?i)ssl"), ("verify-full", "(?i)root certificate|ssl")):
        engine = create_engine(database_url, sslmode=mode)
        try:
            with pytest.raises(Exception, match=why):
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()
    for mode in ("disable", "prefer"):
        engine = create_engine(database_url, sslmode=mode)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT 1")) == 1
        finally:
            await engine.dispose()
