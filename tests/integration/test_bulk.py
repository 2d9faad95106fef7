"""Array statements straight to asyncpg run inside the caller's SQLAlchemy transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, select

from dripiq_common import bulk
from dripiq_dispatcher.models import rate_counters
from dripiq_events.models import message_events

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Abort(Exception):
    pass


async def test_a_first_statement_through_the_driver_is_rolled_back_with_the_transaction(engine):
    scope = f"test:{uuid.uuid4()}"

    with pytest.raises(Abort):
        async with engine.begin() as conn:
            await bulk.insert_rows(
                conn, rate_counters, [{"scope": scope, "window": "minute", "window_start": T0, "used": 1}]
            )
            assert (await bulk.driver(conn)).is_in_transaction()
            raise Abort

    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).where(rate_counters.c.scope == scope))
    assert count == 0


async def test_rows_go_in_and_change_in_one_statement_each(engine):
    scopes = [f"test:{uuid.uuid4()}" for _ in range(3)]
    async with engine.begin() as conn:
        await bulk.insert_rows(
            conn, rate_counters, [{"scope": s, "window": "day", "window_start": T0, "used": 0} for s in scopes]
        )
        await bulk.update_rows(conn, rate_counters, [(s, {"used": n}) for n, s in enumerate(scopes)], key="scope")

    async with engine.connect() as conn:
        rows = await conn.execute(
            select(rate_counters.c.scope, rate_counters.c.used).where(rate_counters.c.scope.in_(scopes))
        )
        assert dict(rows.all()) == {s: n for n, s in enumerate(scopes)}


async def test_records_go_in_as_one_array_of_the_table_row_type(engine):
    """Columns left out get their defaults; RETURNING and ON CONFLICT work as with insert_rows;
    jsonb and NULLs travel inside the records."""
    key = f"bulk-{uuid.uuid4()}"
    rows = [
        {
            "provider": "test",
            "provider_event_id": f"{key}-{n}",
            "event_type": "open",
            "occurred_at": T0,
            "matched": False,
            "tenant_id": None,
            "raw_event": json.dumps({"n": n, "text": 'é"quoted"'}),
        }
        for n in range(3)
    ]
    suffix = "ON CONFLICT DO NOTHING RETURNING provider_event_id, received_at, machine_open"
    async with engine.begin() as conn:
        first = await bulk.insert_records(conn, message_events, rows, suffix=suffix)
        again = await bulk.insert_records(conn, message_events, rows, suffix=suffix)
    assert sorted(r["provider_event_id"] for r in first) == [f"{key}-{n}" for n in range(3)]
    assert all(r["received_at"] is not None and r["machine_open"] is False for r in first)
    assert again == []
    async with engine.connect() as conn:
        stored = await conn.execute(
            select(message_events.c.raw_event).where(message_events.c.provider_event_id == f"{key}-1")
        )
        assert stored.scalar_one() == {"n": 1, "text": 'é"quoted"'}


async def test_records_go_in_again_after_the_table_gains_a_column(engine):
    name = f"bulk_probe_{uuid.uuid4().hex[:8]}"
    probe = Table(name, MetaData(), Column("id", Integer), Column("note", Text), schema="public")
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE TABLE public.{name} (id integer, note text)")

    async def insert(conn, n: int) -> bool:  # type: ignore[no-untyped-def]
        try:
            async with conn.begin():
                await bulk.insert_records(conn, probe, [{"id": n, "note": "row"}])
        except Exception:
            return False
        return True

    # Two pooled connections that both wrote records of the old shape.
    async with engine.connect() as first, engine.connect() as second:
        assert await insert(first, 1) and await insert(second, 2)
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"ALTER TABLE public.{name} ADD COLUMN extra text DEFAULT 'x'")
        # The first batch after the change may fail, as a redelivered one would be retried;
        # from then on every connection writes the new shape.
        await insert(first, 3)
        assert await insert(second, 4), "a connection that did not see the failure reloads too"
        assert await insert(first, 5)
    async with engine.begin() as conn:
        rows = (await conn.exec_driver_sql(f"SELECT id, extra FROM public.{name} ORDER BY id")).all()
        await conn.exec_driver_sql(f"DROP TABLE public.{name}")
    assert {(1, "x"), (2, "x"), (4, "x"), (5, "x")} <= {tuple(r) for r in rows}
