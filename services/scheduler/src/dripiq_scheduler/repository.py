"""Timer storage. Every query is scoped by tenant; firing takes rows with SKIP LOCKED so any
number of replicas can fire without stepping on each other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_scheduler.models import timers

ACTIVE, FIRED, CANCELED = "active", "fired", "canceled"


@dataclass(frozen=True)
class NewTimer:
    tenant_id: str
    key: str
    group_key: str
    kind: str
    fire_at: datetime
    target_subject: str
    payload: bytes


def _upsert(now: datetime):  # type: ignore[no-untyped-def]
    """Upsert by (tenant, key). Same content: no-op, whatever the status (a redelivered command
    never re-arms a fired or canceled timer). New content: re-arms it and bumps the version.
    Executed with a list of rows: one compiled statement, sent as an executemany."""
    stmt = insert(timers)
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        constraint="timers_tenant_key_key",
        set_={
            "group_key": excluded.group_key,
            "kind": excluded.kind,
            "scheduled_for": excluded.scheduled_for,
            "target_subject": excluded.target_subject,
            "payload": excluded.payload,
            "status": ACTIVE,
            "version": timers.c.version + 1,
            "updated_at": now,
            "fired_at": None,
            "canceled_at": None,
        },
        where=(
            func.row(timers.c.scheduled_for, timers.c.target_subject, timers.c.payload).is_distinct_from(
                func.row(excluded.scheduled_for, excluded.target_subject, excluded.payload)
            )
        ),
    )


def _values(timer: NewTimer) -> dict:  # type: ignore[type-arg]
    return {
        "tenant_id": timer.tenant_id,
        "key": timer.key,
        "group_key": timer.group_key,
        "kind": timer.kind,
        "scheduled_for": timer.fire_at,
        "target_subject": timer.target_subject,
        "payload": timer.payload,
    }


async def schedule(conn: AsyncConnection, *, timer: NewTimer, now: datetime):  # type: ignore[no-untyped-def]
    row = (await conn.execute(_upsert(now).values(_values(timer)).returning(*timers.c))).first()
    return row or await get(conn, tenant_id=timer.tenant_id, key=timer.key)


async def schedule_many(conn: AsyncConnection, *, batch: list[NewTimer], now: datetime) -> None:
    """One statement for many timers; a key given twice keeps its last content."""
    latest = {(t.tenant_id, t.key): t for t in batch}
    # Sorted, so two replicas upserting overlapping keys lock rows in the same order.
    await conn.execute(_upsert(now), [_values(latest[k]) for k in sorted(latest)])


async def get(conn: AsyncConnection, *, tenant_id: str, key: str):  # type: ignore[no-untyped-def]
    return (await conn.execute(select(timers).where(timers.c.tenant_id == tenant_id, timers.c.key == key))).first()


async def cancel(conn: AsyncConnection, *, tenant_id: str, key: str, now: datetime):  # type: ignore[no-untyped-def]
    await conn.execute(
        update(timers)
        .where(timers.c.tenant_id == tenant_id, timers.c.key == key, timers.c.status == ACTIVE)
        .values(status=CANCELED, canceled_at=now, updated_at=now)
    )
    return await get(conn, tenant_id=tenant_id, key=key)


async def cancel_many(conn: AsyncConnection, *, tenant_id: str, keys: list[str], now: datetime) -> int:
    result = await conn.execute(
        update(timers)
        .where(timers.c.tenant_id == tenant_id, timers.c.key.in_(sorted(set(keys))), timers.c.status == ACTIVE)
        .values(status=CANCELED, canceled_at=now, updated_at=now)
    )
    return result.rowcount or 0


async def cancel_group(conn: AsyncConnection, *, tenant_id: str, group_key: str, now: datetime) -> int:
    result = await conn.execute(
        update(timers)
        .where(timers.c.tenant_id == tenant_id, timers.c.group_key == group_key, timers.c.status == ACTIVE)
        .values(status=CANCELED, canceled_at=now, updated_at=now)
    )
    return result.rowcount or 0


async def lock_due(conn: AsyncConnection, *, now: datetime, limit: int):  # type: ignore[no-untyped-def]
    """Due timers in due order, locked for this transaction; others skip them."""
    return (
        await conn.execute(
            select(
                timers.c.id,
                timers.c.tenant_id,
                timers.c.key,
                timers.c.version,
                timers.c.kind,
                timers.c.target_subject,
                timers.c.payload,
                timers.c.scheduled_for,
            )
            .where(timers.c.status == ACTIVE, timers.c.scheduled_for <= now)
            .order_by(timers.c.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def mark_fired(conn: AsyncConnection, *, ids: list[int], now: datetime) -> None:
    if ids:
        await conn.execute(
            update(timers).where(timers.c.id.in_(ids)).values(status=FIRED, fired_at=now, updated_at=now)
        )
