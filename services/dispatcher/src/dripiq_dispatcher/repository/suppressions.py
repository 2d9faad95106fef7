"""Suppressed addresses per tenant, with the reason each was added for."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Row, Text, bindparam, delete, func, literal, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_dispatcher.models import (
    suppressions,
)
from dripiq_dispatcher.repository.pairs import fetch_by_pairs

_SUPPRESSION_REASONS = (
    "SELECT DISTINCT ON (s.tenant_id, s.address) s.tenant_id, s.address, s.reason "
    "FROM dispatcher.suppressions AS s JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, address) "
    "ON s.tenant_id = v.tenant_id AND s.address = v.address ORDER BY s.tenant_id, s.address, s.created_at"
)


async def suppression_reasons(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Why each suppressed (tenant_id, address) is suppressed (its oldest reason); the
    others are absent. Addresses are the normalized ones."""
    if not keys:
        return {}
    rows = await fetch_by_pairs(conn, _SUPPRESSION_REASONS, keys)
    return {(row["tenant_id"], row["address"]): row["reason"] for row in rows}


async def add_suppression(
    conn: AsyncConnection, *, tenant_id: str, address: str, reason: str, source: str, now: datetime
) -> Row[Any]:
    """Upsert on (tenant, address, reason): the first suppression of a kind is the one kept."""
    values = {"tenant_id": tenant_id, "address": address, "reason": reason}
    created = (
        await conn.execute(
            insert(suppressions)
            .values(**values, source=source, created_at=now)
            .on_conflict_do_nothing(constraint="suppressions_tenant_address_reason_key")
            .returning(*suppressions.c)
        )
    ).first()
    if created is not None:
        return created
    return (await conn.execute(select(suppressions).where(*(suppressions.c[k] == v for k, v in values.items())))).one()


async def find_suppressions(conn: AsyncConnection, *, tenant_id: str, addresses: Sequence[str]) -> Sequence[Row[Any]]:
    return (
        await conn.execute(
            select(suppressions)
            .where(suppressions.c.tenant_id == tenant_id, suppressions.c.address.in_(addresses))
            .order_by(suppressions.c.address, suppressions.c.created_at)
        )
    ).all()


async def remove_suppressions(conn: AsyncConnection, *, tenant_id: str, address: str, reason: str | None) -> int:
    """Delete an address's suppressions, of one reason or (None) all; how many went."""
    query = delete(suppressions).where(suppressions.c.tenant_id == tenant_id, suppressions.c.address == address)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    return len((await conn.execute(query.returning(suppressions.c.id))).all())


async def lift_suppressions(
    conn: AsyncConnection, *, lifts: Sequence[tuple[str, str, str, datetime]]
) -> list[tuple[str, str]]:
    """Delete, per (tenant, address, reason, until), that suppression if it began at or before
    `until`; the (tenant, address) pairs that lost one."""
    if not lifts:
        return []
    rows = await (await bulk.driver(conn)).fetch(
        "DELETE FROM dispatcher.suppressions s USING unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) "
        "AS l(tenant_id, address, reason, until) WHERE s.tenant_id = l.tenant_id AND s.address = l.address "
        "AND s.reason = l.reason AND s.created_at <= l.until RETURNING s.tenant_id, s.address",
        *(list(column) for column in zip(*sorted(lifts), strict=True)),
    )
    return [(row["tenant_id"], row["address"]) for row in rows]


async def list_suppressions(
    conn: AsyncConnection, *, tenant_id: str, reason: str | None, after: tuple[datetime, int] | None, limit: int
) -> Sequence[Row[Any]]:
    """A tenant's suppressions in (created_at, id) order, after a page's last key."""
    query = select(suppressions).where(suppressions.c.tenant_id == tenant_id)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    if after is not None:
        query = query.where(tuple_(suppressions.c.created_at, suppressions.c.id) > tuple_(*after))
    return (await conn.execute(query.order_by(suppressions.c.created_at, suppressions.c.id).limit(limit))).all()


async def import_suppressions(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    items: Sequence[tuple[str, str]],
    source: str,
    now: datetime,
) -> int:
    """Insert (address, reason) pairs in one statement, skipping those already there; how many
    were inserted. The pairs travel as two arrays, so the statement has a handful of parameters
    however many rows it carries."""
    if not items:
        return 0
    pairs = (
        func.unnest(
            bindparam("addresses", [a for a, _ in items], type_=ARRAY(Text)),
            bindparam("reasons", [r for _, r in items], type_=ARRAY(Text)),
        )
        .table_valued("address", "reason")
        .render_derived()
    )
    rows = select(
        literal(tenant_id, Text),
        pairs.c.address,
        pairs.c.reason,
        literal(source, Text),
        literal(now, DateTime(timezone=True)),
    ).select_from(pairs)
    query = (
        insert(suppressions)
        .from_select(["tenant_id", "address", "reason", "source", "created_at"], rows)
        .on_conflict_do_nothing(constraint="suppressions_tenant_address_reason_key")
        .returning(suppressions.c.id)
    )
    return len((await conn.execute(query)).all())


async def add_suppressions(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> None:
    """Insert suppressions in one statement; where (tenant, address, reason) is suppressed
    already, the first one is kept. Rows go in key order, so two writers cannot deadlock."""
    ordered = sorted(rows, key=lambda r: (r["tenant_id"], r["address"], r["reason"]))
    await bulk.insert_rows(
        conn,
        suppressions,
        ordered,
        suffix="ON CONFLICT ON CONSTRAINT suppressions_tenant_address_reason_key DO NOTHING",
    )
