"""The anchor of bench/events_ingest.py: how fast bare PostgreSQL stores the same events.

The same rows the events service would store for the benchmark's batches (the same columns and
widths, the raw event as its JSON text) go into a scratch table shaped like
events.message_events with the same unique key, on the suite's own PostgreSQL server, the way
a hand-written loader would: per 1,000 rows one transaction that copies them into a staging
table (`copy_records_to_table`) and moves them over with `INSERT … SELECT … ON CONFLICT DO
NOTHING`. Rows are built before the clock starts: the figure is PostgreSQL's, not Python's.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

SCHEMA = "bench_bare"
COLUMNS = (
    "tenant_id",
    "provider",
    "provider_event_id",
    "event_type",
    "message_id",
    "campaign_id",
    "step_index",
    "contact_id",
    "email",
    "occurred_at",
    "received_at",
    "machine_open",
    "url",
    "reason",
    "matched",
    "raw_event",
)
_CREATE = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.message_events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id text, provider text NOT NULL, provider_event_id text NOT NULL, event_type text NOT NULL,
    message_id text, campaign_id text, step_index integer, contact_id text, email text,
    occurred_at timestamptz NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
    machine_open boolean NOT NULL DEFAULT false, url text, reason text, matched boolean NOT NULL,
    raw_event json,
    CONSTRAINT message_events_pkey PRIMARY KEY (provider, provider_event_id, occurred_at)
)
"""
_STAGING = (
    f"CREATE TEMP TABLE staging ON COMMIT DELETE ROWS AS SELECT {', '.join(COLUMNS)} "
    f"FROM {SCHEMA}.message_events WITH NO DATA"
)
_MOVE = (
    f"INSERT INTO {SCHEMA}.message_events ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM staging "
    "ON CONFLICT DO NOTHING"
)


def bare_rows(bodies: list[bytes], contacts: dict[str, str]) -> list[tuple[Any, ...]]:
    """The row of each event in the bodies, as the events service stores a matched one."""
    received_at = datetime.now(UTC)
    rows = []
    for body in bodies:
        for event in orjson.loads(body):
            kind = event["event"]
            rows.append(
                (
                    event["tenant_id"],
                    "sendgrid",
                    event["sg_event_id"],
                    kind,
                    event["message_id"],
                    event["campaign_id"],
                    int(event["step_index"]),
                    contacts.get(event["message_id"]),
                    event["email"],
                    datetime.fromtimestamp(event["timestamp"], UTC),
                    received_at,
                    event.get("sg_machine_open") is True,
                    event.get("url"),
                    event.get("type") if kind == "bounce" else event.get("reason"),
                    True,
                    orjson.dumps(event).decode(),
                )
            )
    return rows


async def bare_postgres(
    dsn: str, rows: list[tuple[Any, ...]], *, batch: int = 1000, connections: int = 1
) -> tuple[float, int]:
    """(rows stored per second, rows stored): `rows` in transactions of `batch`, by
    `connections` loaders taking the next batch in turn. The scratch schema is dropped after."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(_CREATE)
        chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
        next_chunk = iter(range(len(chunks)))

        async def loader() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(_STAGING)
                while (i := next(next_chunk, None)) is not None:
                    async with conn.transaction():
                        await conn.copy_records_to_table("staging", records=chunks[i], columns=COLUMNS)
                        await conn.execute(_MOVE)
            finally:
                await conn.close()

        started = time.perf_counter()
        await asyncio.gather(*(loader() for _ in range(connections)))
        seconds = time.perf_counter() - started
        stored = await admin.fetchval(f"SELECT count(*) FROM {SCHEMA}.message_events")
        await admin.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        return stored / seconds, stored
    finally:
        await admin.close()
