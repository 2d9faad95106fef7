"""Timer storage. Every query is scoped by tenant; firing takes rows with SKIP LOCKED so any
number of replicas can fire without stepping on each other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Row,
    any_,
    bindparam,
    delete,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_scheduler.domain import RULES_VERSION
from dripiq_scheduler.models import TimerStatus, timers

# The status in the SQL text, not a parameter, wherever a partial index (WHERE status = 'active'
# or <> 'active') is meant to serve: a prepared statement's generic plan cannot know a
# parameter's value, so cannot use the partial index. The firer's query then read every row due
# so far, fired ones included, and sorted them: ~70 ms a round with 100,000 fired, 8-20 ms for
# an empty poll (docs/performance.md, "The scheduler beside BullMQ").
_ACTIVE = timers.c.status == literal_column(f"'{TimerStatus.ACTIVE}'")
_FINISHED = timers.c.status != literal_column(f"'{TimerStatus.ACTIVE}'")


@dataclass(frozen=True)
class NewTimer:
    tenant_id: str
    key: str
    group_key: str
    kind: str
    fire_at: datetime
    target: str
    target_subject: str
    payload: bytes


def _upsert(now: datetime):
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
            "target": excluded.target,
            "target_subject": excluded.target_subject,
            "payload": excluded.payload,
            "status": TimerStatus.ACTIVE,
            "version": timers.c.version + 1,
            "updated_at": now,
            "fired_at": None,
            "canceled_at": None,
            "cancel_reason": None,
            "rules_checked": excluded.rules_checked,
        },
        where=(
            func.row(timers.c.scheduled_for, timers.c.target, timers.c.payload).is_distinct_from(
                func.row(excluded.scheduled_for, excluded.target, excluded.payload)
            )
        ),
    )


def _values(timer: NewTimer, now: datetime) -> dict:
    # created_at/updated_at from the service's clock, not the server's: the firer measures
    # how long a timer has been due from updated_at, and tests drive that clock.
    return {
        "created_at": now,
        "updated_at": now,
        "tenant_id": timer.tenant_id,
        "key": timer.key,
        "group_key": timer.group_key,
        "kind": timer.kind,
        "scheduled_for": timer.fire_at,
        "target": timer.target,
        "target_subject": timer.target_subject,
        "payload": timer.payload,
        "rules_checked": RULES_VERSION,
    }


async def schedule(conn: AsyncConnection, *, timer: NewTimer, now: datetime):
    row = (await conn.execute(_upsert(now).values(_values(timer, now)).returning(*timers.c))).first()
    return row or await get(conn, tenant_id=timer.tenant_id, key=timer.key)


# A whole batch in one statement: its columns arrive as arrays and unnest into rows. An
# executemany of the single-row upsert ran one statement per timer (per-statement overhead
# in the server and the driver was most of a batch's time, docs/performance.md). Same rules as
# _upsert: same content is a no-op whatever the status; new content re-arms and bumps the version.
_UPSERT_MANY = text(
    f"""
    INSERT INTO {timers.schema}.timers
        (created_at, updated_at, rules_checked, tenant_id, key, group_key, kind, scheduled_for, target,
         target_subject, payload)
    SELECT :now, :now, :rules, t.tenant_id, t.key, t.group_key, t.kind, t.scheduled_for, t.target, t.target_subject, t.payload
    FROM unnest(
        CAST(:tenant_ids AS text[]), CAST(:keys AS text[]), CAST(:group_keys AS text[]), CAST(:kinds AS text[]),
        CAST(:fire_ats AS timestamptz[]), CAST(:targets AS text[]), CAST(:subjects AS text[]),
        CAST(:payloads AS bytea[])
    ) AS t(tenant_id, key, group_key, kind, scheduled_for, target, target_subject, payload)
    ORDER BY t.tenant_id COLLATE "C", t.key COLLATE "C"
    ON CONFLICT ON CONSTRAINT timers_tenant_key_key DO UPDATE SET
        group_key = excluded.group_key,
        kind = excluded.kind,
        scheduled_for = excluded.scheduled_for,
        target = excluded.target,
        target_subject = excluded.target_subject,
        payload = excluded.payload,
        status = '{TimerStatus.ACTIVE}',
        version = timers.version + 1,
        updated_at = :now,
        fired_at = NULL,
        canceled_at = NULL,
        cancel_reason = NULL,
        rules_checked = excluded.rules_checked
    WHERE (timers.scheduled_for, timers.target, timers.payload)
        IS DISTINCT FROM (excluded.scheduled_for, excluded.target, excluded.payload)
    """
)


async def schedule_many(conn: AsyncConnection, *, batch: list[NewTimer], now: datetime) -> None:
    """One statement for many timers; a key given twice keeps its last content."""
    latest = {(t.tenant_id, t.key): t for t in batch}
    # Sorted (the statement orders too, bytewise as Python does; keys are ASCII), so two replicas
    # upserting overlapping keys lock rows in the same order, also across a caller's chunks; one
    # row per key, as ON CONFLICT DO UPDATE cannot touch a row twice.
    rows = [latest[k] for k in sorted(latest)]
    await conn.execute(
        _UPSERT_MANY,
        {
            "now": now,
            "rules": RULES_VERSION,
            "tenant_ids": [t.tenant_id for t in rows],
            "keys": [t.key for t in rows],
            "group_keys": [t.group_key for t in rows],
            "kinds": [t.kind for t in rows],
            "fire_ats": [t.fire_at for t in rows],
            "targets": [str(t.target) for t in rows],
            "subjects": [t.target_subject for t in rows],
            "payloads": [t.payload for t in rows],
        },
    )


async def get(conn: AsyncConnection, *, tenant_id: str, key: str):
    return (await conn.execute(select(timers).where(timers.c.tenant_id == tenant_id, timers.c.key == key))).first()


async def cancel(
    conn: AsyncConnection, *, tenant_id: str, key: str, now: datetime, reason: str = "", include_fired: bool = False
):
    await cancel_many(conn, tenant_id=tenant_id, cancels=[(key, reason, include_fired)], now=now)
    return await get(conn, tenant_id=tenant_id, key=key)


# A cancel stops an active timer. One that fired already is canceled too when the caller says
# it arrived moot (`include_fired`): it keeps its fired_at, and reads canceled with the reason.
# The keys, reasons and flags arrive as arrays: one statement, whatever the batch size.
_CANCEL_MANY = text(
    f"""
    UPDATE {timers.schema}.timers AS t
    SET status = '{TimerStatus.CANCELED}', canceled_at = :now, updated_at = :now,
        cancel_reason = NULLIF(c.reason, '')
    FROM unnest(CAST(:keys AS text[]), CAST(:reasons AS text[]), CAST(:fired AS boolean[])) AS c(key, reason, fired)
    WHERE t.tenant_id = :tenant_id AND t.key = c.key
      AND (t.status = '{TimerStatus.ACTIVE}' OR (c.fired AND t.status = '{TimerStatus.FIRED}'))
    """
)


async def cancel_many(
    conn: AsyncConnection, *, tenant_id: str, cancels: Sequence[tuple[str, str, bool]], now: datetime
) -> int:
    """Cancel (key, reason, include_fired) of one tenant; how many timers it canceled. A key
    given twice keeps its last cancel."""
    last = {key: (reason, fired) for key, reason, fired in cancels}
    keys = sorted(last)
    result = await conn.execute(
        _CANCEL_MANY,
        {
            "tenant_id": tenant_id,
            "now": now,
            "keys": keys,
            "reasons": [last[k][0] for k in keys],
            "fired": [last[k][1] for k in keys],
        },
    )
    return result.rowcount or 0


async def cancel_group(conn: AsyncConnection, *, tenant_id: str, group_key: str, now: datetime) -> int:
    result = await conn.execute(
        update(timers)
        .where(timers.c.tenant_id == tenant_id, timers.c.group_key == group_key, _ACTIVE)
        .values(status=TimerStatus.CANCELED, canceled_at=now, updated_at=now)
    )
    return result.rowcount or 0


async def list_timers(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    status: str | None,
    group_key: str,
    fire_after: datetime | None,
    fire_before: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """A tenant's timers in (scheduled_for, id) order, after a page's last key.

    fire_after is inclusive, fire_before exclusive, so adjacent windows never overlap.
    """
    query = select(timers).where(timers.c.tenant_id == tenant_id)
    if status is not None:
        query = query.where(timers.c.status == status)
    if group_key:
        query = query.where(timers.c.group_key == group_key)
    if fire_after is not None:
        query = query.where(timers.c.scheduled_for >= fire_after)
    if fire_before is not None:
        query = query.where(timers.c.scheduled_for < fire_before)
    if after is not None:
        query = query.where(tuple_(timers.c.scheduled_for, timers.c.id) > tuple_(*after))
    return (await conn.execute(query.order_by(timers.c.scheduled_for, timers.c.id).limit(limit))).all()


async def lock_due(conn: AsyncConnection, *, now: datetime, limit: int):
    """Due timers in due order, locked for this transaction; others skip them."""
    return (
        await conn.execute(
            select(
                timers.c.id,
                timers.c.tenant_id,
                timers.c.key,
                timers.c.group_key,
                timers.c.version,
                timers.c.kind,
                timers.c.target,
                timers.c.target_subject,
                timers.c.payload,
                timers.c.scheduled_for,
                timers.c.updated_at,
                timers.c.rules_checked,
            )
            .where(_ACTIVE, timers.c.scheduled_for <= now)
            .order_by(timers.c.scheduled_for)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()


async def mark_fired(conn: AsyncConnection, *, ids: list[int], now: datetime) -> None:
    if ids:
        await conn.execute(
            update(timers)
            .where(timers.c.id == any_(bindparam("fired_ids", ids, type_=ARRAY(BigInteger))))
            .values(status=TimerStatus.FIRED, fired_at=now, updated_at=now)
        )


async def cancel_overdue(conn: AsyncConnection, *, ids: Sequence[int], reason: str, now: datetime) -> None:
    """The overdue policy's drop: the rows are locked by the caller's firing round."""
    if ids:
        await conn.execute(
            update(timers)
            .where(timers.c.id.in_(ids))
            .values(status=TimerStatus.CANCELED, canceled_at=now, updated_at=now, cancel_reason=reason)
        )


async def cancel_unfireable(conn: AsyncConnection, *, reasons: Sequence[tuple[int, str]], now: datetime) -> None:
    """Timers a firing round found it can never publish (each now a dead letter), canceled with
    why: the rows are locked by the caller's round. One statement, sent as an executemany."""
    if reasons:
        await conn.execute(
            update(timers)
            .where(timers.c.id == bindparam("doomed_id"))
            .values(
                status=TimerStatus.CANCELED, canceled_at=now, updated_at=now, cancel_reason=bindparam("doomed_reason")
            ),
            [{"doomed_id": row_id, "doomed_reason": reason} for row_id, reason in reasons],
        )


async def reschedule_overdue(conn: AsyncConnection, *, moves: Sequence[tuple[int, datetime]], now: datetime) -> None:
    """The overdue policy's delay: each locked row gets its new time and a new version (so the
    message it fires with is a new one on the bus). One statement, sent as an executemany."""
    if moves:
        await conn.execute(
            update(timers)
            .where(timers.c.id == bindparam("move_id"))
            .values(scheduled_for=bindparam("move_to"), version=timers.c.version + 1, updated_at=now),
            [{"move_id": row_id, "move_to": at} for row_id, at in moves],
        )


async def prune(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` fired or canceled timers last changed before `before`.

    Rows another transaction holds are skipped, not waited for, so pruning never queues
    behind (or holds up) a firing round or an upsert re-arming a finished timer.
    `id = ANY(ARRAY(subquery))` rather than `id IN (subquery)`: the planner may turn IN into
    a hash join over the whole table; an array of ids is always looked up by primary key.
    """
    doomed = (
        select(timers.c.id)
        .where(_FINISHED, timers.c.updated_at < before)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await conn.execute(delete(timers).where(timers.c.id == any_(func.array(doomed))))
    return result.rowcount or 0


async def estimate_active(conn: AsyncConnection, *, exact_up_to: int) -> int:
    """Active timers: counted exactly up to `exact_up_to`, estimated above it.

    A full count(*) reads the whole partial due index (seconds at 10M rows, every refresh),
    so the count stops at the cap; beyond it the answer is the planner's row estimate for that
    index (pg_class.reltuples, kept by autovacuum/ANALYZE), never less than the cap.
    """
    capped = select(literal(1)).where(_ACTIVE).limit(exact_up_to).subquery()
    counted = (await conn.execute(select(func.count()).select_from(capped))).scalar_one()
    if counted < exact_up_to:
        return int(counted)
    estimate = (
        await conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:index)"),
            {"index": f"{timers.schema}.timers_due_idx"},
        )
    ).scalar()
    # reltuples is -1 before the first VACUUM/ANALYZE of the table.
    return max(exact_up_to, int(estimate or 0))
