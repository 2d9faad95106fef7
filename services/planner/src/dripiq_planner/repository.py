"""Planner storage: campaigns, steps and rule decisions, always scoped by tenant."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_planner.models import (
    ai_generations,
    campaign_changes,
    campaign_steps,
    contact_campaigns,
    rule_decisions,
    tenant_settings,
)
from dripiq_planner.state import RUNNING, CampaignStatus
from dripiq_planner.tenants import TenantDefaults


async def insert_campaigns(
    conn: AsyncConnection,
    *,
    campaigns: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    generations: list[dict[str, Any]],
) -> None:
    """Many campaigns in three statements; the caller has refused duplicates already."""
    await conn.execute(insert(contact_campaigns), campaigns)
    if steps:
        await conn.execute(insert(campaign_steps), steps)
    if generations:
        await conn.execute(insert(ai_generations), generations)


async def insert_steps(conn: AsyncConnection, *, steps: list[dict[str, Any]]) -> None:
    if steps:
        await conn.execute(insert(campaign_steps), steps)


async def insert_generations(conn: AsyncConnection, *, generations: list[dict[str, Any]]) -> None:
    if generations:
        await conn.execute(insert(ai_generations), generations)


async def get_campaign(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str, for_update: bool = False
) -> Row | None:
    query = select(contact_campaigns).where(
        contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.id == campaign_id
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def find_by_requests(conn: AsyncConnection, *, tenant_id: str, request_ids: list[str]) -> dict[str, Row]:
    if not request_ids:
        return {}
    rows = (
        await conn.execute(
            select(contact_campaigns).where(
                contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.request_id.in_(request_ids)
            )
        )
    ).all()
    return {row.request_id: row for row in rows}


async def find_running_many(
    conn: AsyncConnection, *, tenant_id: str, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(contact_id, product_id) -> id of the campaign already running for it."""
    if not pairs:
        return {}
    rows = (
        await conn.execute(
            select(contact_campaigns.c.id, contact_campaigns.c.contact_id, contact_campaigns.c.product_id).where(
                contact_campaigns.c.tenant_id == tenant_id,
                contact_campaigns.c.status.in_(RUNNING),
                tuple_(contact_campaigns.c.contact_id, contact_campaigns.c.product_id).in_(pairs),
            )
        )
    ).all()
    return {(row.contact_id, row.product_id): row.id for row in rows}


async def running_in_scope(
    conn: AsyncConnection, *, tenant_id: str, contact_id: str | None, lead_id: str | None
) -> set[tuple[str, str]]:
    """(tenant_id, id) of the tenant's running campaigns for a contact or for a lead."""
    query = select(contact_campaigns.c.id).where(
        contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.status.in_(RUNNING)
    )
    if contact_id is not None:
        query = query.where(contact_campaigns.c.contact_id == contact_id)
    elif lead_id is not None:
        query = query.where(contact_campaigns.c.lead_id == lead_id)
    else:
        return set()
    return {(tenant_id, row.id) for row in (await conn.execute(query)).all()}


async def find_blocking(
    conn: AsyncConnection, *, tenant_id: str, contact_ids: list[str], ended_after: datetime
) -> dict[str, tuple[str, datetime | None]]:
    """contact_id -> (id, ended_at) of a campaign that keeps the contact from a new one: one
    running (ended_at None), else the one that ended last, after `ended_after`."""
    if not contact_ids:
        return {}
    running = contact_campaigns.c.status.in_(RUNNING)
    rows = (
        await conn.execute(
            select(contact_campaigns.c.id, contact_campaigns.c.contact_id, contact_campaigns.c.ended_at, running)
            .where(
                contact_campaigns.c.tenant_id == tenant_id,
                contact_campaigns.c.contact_id.in_(contact_ids),
                running | (contact_campaigns.c.ended_at > ended_after),
            )
            .order_by(contact_campaigns.c.contact_id, running.desc(), contact_campaigns.c.ended_at.desc())
        )
    ).all()
    out: dict[str, tuple[str, datetime | None]] = {}
    for row in rows:
        out.setdefault(row.contact_id, (row.id, None if row[3] else row.ended_at))
    return out


async def lock_contacts(conn: AsyncConnection, *, tenant_id: str, contact_ids: list[str]) -> None:
    """Hold the tenant's contacts until commit, in one order, so two concurrent creates cannot
    both find a contact free and enrol it twice (no unique index spans products)."""
    if contact_ids:
        await conn.execute(
            text(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(:tenant || ':' || c, 0) AS k "
                "FROM unnest(CAST(:contacts AS text[])) AS c ORDER BY k) AS keys"
            ),
            {"tenant": tenant_id, "contacts": sorted(set(contact_ids))},
        )


async def list_campaigns(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    status: str | None,
    contact_id: str,
    lead_id: str,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Row]:
    """Newest first, keyed by (created_at, id) so pages stay stable while campaigns are added."""
    query = select(contact_campaigns).where(contact_campaigns.c.tenant_id == tenant_id)
    if status:
        query = query.where(contact_campaigns.c.status == status)
    if contact_id:
        query = query.where(contact_campaigns.c.contact_id == contact_id)
    if lead_id:
        query = query.where(contact_campaigns.c.lead_id == lead_id)
    if before is not None:
        query = query.where(tuple_(contact_campaigns.c.created_at, contact_campaigns.c.id) < tuple_(*before))
    order = (contact_campaigns.c.created_at.desc(), contact_campaigns.c.id.desc())
    return list((await conn.execute(query.order_by(*order).limit(limit))).all())


async def get_decisions(conn: AsyncConnection, *, tenant_id: str, campaign_id: str) -> list[Row]:
    return list(
        (
            await conn.execute(
                select(rule_decisions)
                .where(rule_decisions.c.tenant_id == tenant_id, rule_decisions.c.campaign_id == campaign_id)
                .order_by(rule_decisions.c.id)
            )
        ).all()
    )


async def get_tenant_settings(conn: AsyncConnection, *, tenant_id: str) -> Row | None:
    return (await conn.execute(select(tenant_settings).where(tenant_settings.c.tenant_id == tenant_id))).first()


async def tenant_defaults(conn: AsyncConnection, *, tenant_ids: Collection[str]) -> dict[str, TenantDefaults]:
    """Each tenant's settings, the built-in defaults for a tenant without a row."""
    rows = (await conn.execute(select(tenant_settings).where(tenant_settings.c.tenant_id.in_(list(tenant_ids))))).all()
    found = {row.tenant_id: TenantDefaults.from_row(row) for row in rows}
    return {tenant: found.get(tenant, TenantDefaults()) for tenant in tenant_ids}


async def upsert_tenant_settings(conn: AsyncConnection, *, tenant_id: str, values: dict[str, Any]) -> Row:
    stmt = insert(tenant_settings).values(tenant_id=tenant_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=[tenant_settings.c.tenant_id], set_=values)
    return (await conn.execute(stmt.returning(*tenant_settings.c))).one()


async def set_step_variants(conn: AsyncConnection, *, step_id: int, variants: list[dict[str, Any]]) -> None:
    await conn.execute(update(campaign_steps).where(campaign_steps.c.id == step_id).values(variants=variants))


async def get_steps(conn: AsyncConnection, *, campaign_id: str) -> list[Row]:
    return list(
        (
            await conn.execute(
                select(campaign_steps)
                .where(campaign_steps.c.campaign_id == campaign_id)
                .order_by(campaign_steps.c.step_index)
            )
        ).all()
    )


async def insert_changes(conn: AsyncConnection, *, changes: list[dict[str, Any]]) -> None:
    if changes:
        await conn.execute(insert(campaign_changes), changes)


async def get_changes(conn: AsyncConnection, *, tenant_id: str, campaign_id: str) -> list[Row]:
    return list(
        (
            await conn.execute(
                select(campaign_changes)
                .where(campaign_changes.c.tenant_id == tenant_id, campaign_changes.c.campaign_id == campaign_id)
                .order_by(campaign_changes.c.id)
            )
        ).all()
    )


async def get_strategy(conn: AsyncConnection, *, tenant_id: str, campaign_id: str) -> dict[str, Any]:
    return (
        await conn.execute(
            select(contact_campaigns.c.strategy_json).where(
                contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.id == campaign_id
            )
        )
    ).scalar_one()


async def set_strategy(conn: AsyncConnection, *, tenant_id: str, campaign_id: str, strategy: dict[str, Any]) -> None:
    await conn.execute(
        update(contact_campaigns)
        .where(contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.id == campaign_id)
        .values(strategy_json=strategy)
    )


async def draft_ids(
    conn: AsyncConnection,
    *,
    tenant_id: str,
    product_id: str,
    sender_identity_id: str,
    created_before: datetime,
    limit: int,
) -> list[str]:
    """A tenant's drafts matching the filters, oldest first (contact_campaigns_drafts_idx)."""
    query = select(contact_campaigns.c.id).where(
        contact_campaigns.c.tenant_id == tenant_id,
        contact_campaigns.c.status == CampaignStatus.DRAFT.value,
        contact_campaigns.c.created_at <= created_before,
    )
    if product_id:
        query = query.where(contact_campaigns.c.product_id == product_id)
    if sender_identity_id:
        query = query.where(contact_campaigns.c.sender_identity_id == sender_identity_id)
    order = (contact_campaigns.c.created_at, contact_campaigns.c.id)
    return list((await conn.execute(query.order_by(*order).limit(limit))).scalars())


# -- planning (planning_worker): a batch of campaigns read, held and stored together ----------


async def get_campaigns(conn: AsyncConnection, *, keys: list[tuple[str, str]], for_update: bool = False) -> list[Row]:
    """The campaigns named by (tenant, id), in id order (the order every writer locks them in)."""
    if not keys:
        return []
    query = (
        select(contact_campaigns)
        .where(tuple_(contact_campaigns.c.tenant_id, contact_campaigns.c.id).in_(sorted(set(keys))))
        .order_by(contact_campaigns.c.id)
    )
    if for_update:
        query = query.with_for_update()
    return list((await conn.execute(query)).all())


async def lock_planning(conn: AsyncConnection, *, tenant_id: str) -> None:
    """The tenant's planning lock, until the transaction ends: its holds are counted and taken
    under it, so replicas never hold more than the tenant's concurrency."""
    await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("planning:" + tenant_id))))


async def planning_held(conn: AsyncConnection, *, tenant_ids: list[str], now: datetime) -> dict[str, int]:
    """Per tenant, the campaigns a live worker is planning now."""
    query = (
        select(contact_campaigns.c.tenant_id, func.count())
        .where(
            contact_campaigns.c.tenant_id.in_(tenant_ids),
            contact_campaigns.c.status.in_([CampaignStatus.PLANNING, CampaignStatus.PAUSED]),
            contact_campaigns.c.planning_until > now,
        )
        .group_by(contact_campaigns.c.tenant_id)
    )
    return {tenant: int(count) for tenant, count in (await conn.execute(query)).all()}


async def hold_planning(conn: AsyncConnection, *, campaign_ids: list[str], until: datetime | None) -> None:
    """Hold (or with None let go of) campaigns still waiting for their strategy."""
    if not campaign_ids:
        return
    db = await bulk.driver(conn)
    await db.execute(
        "UPDATE planner.contact_campaigns SET planning_until = $2 WHERE id = ANY($1::text[]) AND planned_at IS NULL",
        sorted(campaign_ids),
        until,
    )


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def insert_steps_bulk(conn: AsyncConnection, *, steps: list[dict[str, Any]]) -> None:
    """Many campaigns' steps in one statement."""
    rows = [
        {**s, "variants": json.dumps(s["variants"]), "send_window_json": _json_or_null(s["send_window_json"])}
        for s in steps
    ]
    await bulk.insert_rows(conn, campaign_steps, rows, casts={"variants": "text", "send_window_json": "text"})


async def insert_generations_bulk(conn: AsyncConnection, *, generations: list[dict[str, Any]]) -> None:
    """Strategist calls of many campaigns in one statement."""
    rows = [
        {**g, "input_json": json.dumps(g["input_json"]), "output_json": _json_or_null(g["output_json"])}
        for g in generations
    ]
    await bulk.insert_rows(conn, ai_generations, rows, casts={"input_json": "text", "output_json": "text"})


async def mark_planned(conn: AsyncConnection, *, campaigns: list[dict[str, Any]], now: datetime) -> None:
    """Campaigns' strategies and statuses once planned, in one statement."""
    if not campaigns:
        return
    names = ("id", "status", "strategy_json", "rules_json", "strategist", "strategist_reason", "pause_version")
    columns = [[json.dumps(c[n]) if n in ("strategy_json", "rules_json") else c[n] for c in campaigns] for n in names]
    db = await bulk.driver(conn)
    await db.execute(
        "UPDATE planner.contact_campaigns AS t SET status = v.status, strategy_json = v.strategy_json::jsonb, "
        "rules_json = v.rules_json::jsonb, strategist = v.strategist, strategist_reason = v.strategist_reason, "
        "pause_version = v.pause_version, planned_at = $8, planning_until = NULL, updated_at = $8 "
        f"FROM {bulk.unnest(['text'] * (len(names) - 1) + ['int'], names)} WHERE t.id = v.id",
        *columns,
        now,
    )
