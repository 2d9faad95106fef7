"""Monthly partitions of events.message_events: created ahead, dropped past retention, and
their raw payloads compacted after a while, all without plpgsql.

Rows whose month has no partition land in the DEFAULT partition, so nothing is ever lost.
But PostgreSQL refuses to create a month's partition while the DEFAULT partition holds rows
of that month, so months are created well before their first event: by the migration, at
start-up and then daily. Dropping a month past retention is a `DROP TABLE` of its partition:
no row-by-row delete, no bloat. The provider's raw event (`raw_event`) is kept for a while for
investigations, then set to NULL in small batches; the parsed columns stay.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.loops import count_round
from dripiq_events.models import SCHEMA, message_events

log = structlog.get_logger(__name__)

PARENT = f'"{SCHEMA}"."{message_events.name}"'
DEFAULT_PARTITION_SQL = (
    f'CREATE TABLE IF NOT EXISTS "{SCHEMA}"."{message_events.name}_default" PARTITION OF {PARENT} DEFAULT'
)
# Replicas starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic
# against a concurrent create); one transaction-scoped lock makes them take turns.
_LOCK_KEY = "dripiq.events.message_events.partitions"


@dataclass(frozen=True)
class MonthPartition:
    name: str
    start: datetime
    end: datetime

    def create_sql(self) -> str:
        # Explicit +00 offsets: the bounds must not depend on the session's TimeZone.
        return (
            f'CREATE TABLE IF NOT EXISTS "{SCHEMA}"."{self.name}" PARTITION OF {PARENT} '
            f"FOR VALUES FROM ('{self.start:%Y-%m-%d} 00:00:00+00') TO ('{self.end:%Y-%m-%d} 00:00:00+00')"
        )


def _month_start(year: int, month: int) -> datetime:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def months_to_cover(now: datetime, months_ahead: int) -> list[MonthPartition]:
    """Last month (late events still arrive for it) through `months_ahead` months after this one."""
    now = now.astimezone(UTC)
    months = []
    for offset in range(-1, months_ahead + 1):
        start = _month_start(now.year, now.month + offset)
        end = _month_start(now.year, now.month + offset + 1)
        months.append(MonthPartition(f"{message_events.name}_{start:%Y_%m}", start, end))
    return months


async def ensure_partitions(conn: AsyncConnection, *, now: datetime, months_ahead: int) -> list[str]:
    """Create the missing monthly partitions; returns the names it created.

    Each month gets its own savepoint: one month that cannot be created (the DEFAULT
    partition already holds its rows) is logged and does not stop the others.
    """
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _LOCK_KEY})
    created = []
    for month in months_to_cover(now, months_ahead):
        exists = await conn.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{SCHEMA}.{month.name}"})
        if exists:
            continue
        try:
            async with conn.begin_nested():
                # Through the schema owner's function: the service's own role has no DDL rights.
                await conn.execute(
                    text(f'SELECT "{SCHEMA}".create_month_partition(:name, :start, :end)'),
                    {"name": month.name, "start": month.start, "end": month.end},
                )
        except DBAPIError as exc:
            log.error(
                "partitions.create_failed",
                partition=month.name,
                error=str(exc.orig),
                hint="move that month's rows out of the DEFAULT partition, then retry",
            )
            continue
        created.append(month.name)
    if created:
        log.info("partitions.created", partitions=created)
    return created


_PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
    "JOIN pg_class AS p ON p.oid = i.inhparent JOIN pg_namespace AS n ON n.oid = p.relnamespace "
    "WHERE n.nspname = :schema AND p.relname = :parent"
)
LOOP_NAME = "partitions"
PRUNE_BATCH = 5000
MAX_PRUNE_ROUNDS = 1000
_MONTH_NAME = re.compile(rf"{message_events.name}_(\d{{4}})_(\d{{2}})")


def retention_cutoff(now: datetime, retention_months: int) -> datetime:
    """The start of the oldest month kept: `retention_months` whole months before this one."""
    now = now.astimezone(UTC)
    return _month_start(now.year, now.month - retention_months)


async def drop_expired_partitions(conn: AsyncConnection, *, now: datetime, retention_months: int) -> list[str]:
    """Drop the monthly partitions that end on or before the retention cutoff; their names."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _LOCK_KEY})
    cutoff = retention_cutoff(now, retention_months)
    names = (await conn.execute(text(_PARTITIONS_SQL), {"schema": SCHEMA, "parent": message_events.name})).scalars()
    dropped = []
    for name in sorted(names):
        match = _MONTH_NAME.fullmatch(name)
        if match is None:
            continue  # the DEFAULT partition
        if _month_start(int(match.group(1)), int(match.group(2)) + 1) <= cutoff:
            await conn.execute(text(f'SELECT "{SCHEMA}".drop_month_partition(:name)'), {"name": name})
            dropped.append(name)
    if dropped:
        log.info("partitions.dropped", partitions=dropped, cutoff=cutoff.isoformat())
    return dropped


_PRUNE_DEFAULT_SQL = (
    f'DELETE FROM "{SCHEMA}"."{message_events.name}_default" AS e USING ('
    f'SELECT id, occurred_at FROM "{SCHEMA}"."{message_events.name}_default" WHERE occurred_at < :before LIMIT :limit'
    ") AS old WHERE e.id = old.id AND e.occurred_at = old.occurred_at"
)


async def prune_default_partition(engine: AsyncEngine, *, before: datetime, limit: int = PRUNE_BATCH) -> int:
    """Delete events older than the retention cutoff that sit in the DEFAULT partition (months
    that had no partition of their own), `limit` at a time; how many."""
    async with engine.begin() as conn:
        result = await conn.execute(text(_PRUNE_DEFAULT_SQL), {"before": before, "limit": limit})
    return int(result.rowcount)


_COMPACT_SQL = (
    f"UPDATE {PARENT} AS e SET raw_event = NULL FROM ("
    f"SELECT provider, provider_event_id, occurred_at FROM {PARENT} "
    "WHERE occurred_at < :before AND raw_event IS NOT NULL LIMIT :limit"
    ") AS old WHERE e.provider = old.provider AND e.provider_event_id = old.provider_event_id "
    "AND e.occurred_at = old.occurred_at"
)


async def compact_raw_events(engine: AsyncEngine, *, before: datetime, limit: int) -> int:
    """Drop the raw payload of up to `limit` events that happened before `before`; how many."""
    async with engine.begin() as conn:
        result = await conn.execute(text(_COMPACT_SQL), {"before": before, "limit": limit})
    return int(result.rowcount)


_PRUNE_OUTBOUND_SQL = (
    f'DELETE FROM "{SCHEMA}".outbound_messages WHERE message_id IN ('
    f'SELECT message_id FROM "{SCHEMA}".outbound_messages WHERE sent_at < :before ORDER BY sent_at LIMIT :limit)'
)


async def prune_outbound(engine: AsyncEngine, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of our copies of messages sent before `before` (oldest first): their
    events are past retention too, so nothing left needs them to correlate; how many."""
    async with engine.begin() as conn:
        result = await conn.execute(text(_PRUNE_OUTBOUND_SQL), {"before": before, "limit": limit})
    return int(result.rowcount)


@dataclass
class PartitionMaintainer:
    """Runs ensure_partitions (and, with a retention, drop_expired_partitions) at start-up and
    then every `interval_seconds`."""

    engine: AsyncEngine
    clock: Clock
    months_ahead: int
    interval_seconds: float = 24 * 3600
    # Whole months of events kept before the current one; 0 keeps every month.
    retention_months: int = 0
    retry_seconds: float = 60
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            wait = self.interval_seconds
            try:
                async with self.engine.begin() as conn:
                    await ensure_partitions(conn, now=self.clock.now(), months_ahead=self.months_ahead)
                if self.retention_months:
                    async with self.engine.begin() as conn:
                        await drop_expired_partitions(
                            conn, now=self.clock.now(), retention_months=self.retention_months
                        )
                    cutoff = retention_cutoff(self.clock.now(), self.retention_months)
                    for _ in range(MAX_PRUNE_ROUNDS):  # bounded; the next daily round goes on
                        if await prune_default_partition(self.engine, before=cutoff) < PRUNE_BATCH:
                            break
            except Exception as exc:
                count_round(LOOP_NAME, ok=False)
                log.warning("partitions.round_failed", error=repr(exc), retry_in=self.retry_seconds)
                wait = self.retry_seconds
            else:
                count_round(LOOP_NAME, ok=True)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            except TimeoutError:
                pass
