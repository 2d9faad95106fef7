"""Send budgets per tenant and channel, and the counters admission takes from, per fixed window."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_dispatcher.models import (
    rate_counters,
    rate_limits,
)
from dripiq_dispatcher.repository.pairs import fetch_by_pairs


async def get_rate_limit(conn: AsyncConnection, *, tenant_id: str, channel: str) -> dict[str, int]:
    """The tenant's limits on the channel by window name; 0 (none) where unset."""
    return (await rate_limits_for(conn, keys={(tenant_id, channel)}))[(tenant_id, channel)]


async def set_rate_limit(
    conn: AsyncConnection, *, tenant_id: str, channel: str, limits: dict[str, int], now: datetime
) -> None:
    values = {"per_minute": limits["minute"], "per_hour": limits["hour"], "per_day": limits["day"]}
    await conn.execute(
        insert(rate_limits)
        .values(tenant_id=tenant_id, channel=channel, updated_at=now, **values)
        .on_conflict_do_update(constraint="rate_limits_pkey", set_={**values, "updated_at": now})
    )


_RATE_LIMITS = (
    "SELECT r.tenant_id, r.channel, r.per_minute, r.per_hour, r.per_day FROM dispatcher.rate_limits AS r "
    "JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, channel) "
    "ON r.tenant_id = v.tenant_id AND r.channel = v.channel"
)


async def rate_limits_for(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Limits by (tenant_id, channel) and window name; 0 (none) where unset."""
    limits = {key: {"minute": 0, "hour": 0, "day": 0} for key in keys}
    if not keys:
        return limits
    for row in await fetch_by_pairs(conn, _RATE_LIMITS, keys):
        limits[(row["tenant_id"], row["channel"])] = {
            "minute": row["per_minute"] or 0,
            "hour": row["per_hour"] or 0,
            "day": row["per_day"] or 0,
        }
    return limits


# (scope, window, window_start): one budget's counter.
CounterKey = tuple[str, str, datetime]


_CREATE_COUNTERS = (
    'INSERT INTO dispatcher.rate_counters (scope, "window", window_start, used) '
    "SELECT scope, w, ws, 0 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(scope, w, ws) "
    "ON CONFLICT ON CONSTRAINT rate_counters_pkey DO NOTHING"
)


_LOCK_COUNTERS = (
    'SELECT c.scope, c."window", c.window_start, c.used FROM dispatcher.rate_counters AS c '
    "JOIN unnest($1::text[], $2::text[], $3::timestamptz[]) AS v(scope, w, ws) "
    'ON c.scope = v.scope AND c."window" = v.w AND c.window_start = v.ws '
    'ORDER BY c.scope, c."window", c.window_start FOR UPDATE OF c'
)


_SET_COUNTERS = (
    "UPDATE dispatcher.rate_counters AS c SET used = v.used "
    "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) AS v(scope, w, ws, used) "
    'WHERE c.scope = v.scope AND c."window" = v.w AND c.window_start = v.ws'
)


async def lock_counters(conn: AsyncConnection, *, keys: Collection[CounterKey]) -> dict[CounterKey, int]:
    """Sends used so far in each budget window, the counters locked until the transaction
    ends (in key order, so replicas admitting at once queue up instead of deadlocking)."""
    ordered = sorted(keys)
    arrays = [[k[0] for k in ordered], [k[1] for k in ordered], [k[2] for k in ordered]]
    db = await bulk.driver(conn)
    await db.execute(_CREATE_COUNTERS, *arrays)
    rows = await db.fetch(_LOCK_COUNTERS, *arrays)
    return {(row["scope"], row["window"], row["window_start"]): row["used"] for row in rows}


async def set_counters(conn: AsyncConnection, *, used: dict[CounterKey, int]) -> None:
    """Write back counters taken with `lock_counters` in the same transaction."""
    ordered = sorted(used)
    await (await bulk.driver(conn)).execute(
        _SET_COUNTERS,
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        [k[2] for k in ordered],
        [used[k] for k in ordered],
    )


async def prune_counters(conn: AsyncConnection, *, ended_before: datetime, limit: int) -> int:
    """Delete up to `limit` counters of windows that started before `ended_before`; how many."""
    stale = (
        select(rate_counters.c.scope, rate_counters.c.window, rate_counters.c.window_start)
        .where(rate_counters.c.window_start < ended_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    query = delete(rate_counters).where(
        tuple_(rate_counters.c.scope, rate_counters.c.window, rate_counters.c.window_start).in_(stale)
    )
    return int((await conn.execute(query)).rowcount)
