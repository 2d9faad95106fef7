"""Planner storage: campaigns, steps and rule decisions, always scoped by tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_planner.models import campaign_steps, contact_campaigns, rule_decisions

RUNNING = ("active", "paused")
OPEN_STEP_STATUSES = ("pending", "scheduled")


async def insert_campaign(conn: AsyncConnection, *, values: dict[str, Any], steps: list[dict[str, Any]]) -> None:
    await conn.execute(insert(contact_campaigns).values(**values))
    await conn.execute(insert(campaign_steps), steps)


async def get_campaign(
    conn: AsyncConnection, *, tenant_id: str, campaign_id: str, for_update: bool = False
) -> Row | None:
    query = select(contact_campaigns).where(
        contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.id == campaign_id
    )
    if for_update:
        query = query.with_for_update()
    return (await conn.execute(query)).first()


async def find_by_request(conn: AsyncConnection, *, tenant_id: str, request_id: str) -> Row | None:
    return (
        await conn.execute(
            select(contact_campaigns).where(
                contact_campaigns.c.tenant_id == tenant_id, contact_campaigns.c.request_id == request_id
            )
        )
    ).first()


async def find_running(conn: AsyncConnection, *, tenant_id: str, contact_id: str, product_id: str) -> Row | None:
    return (
        await conn.execute(
            select(contact_campaigns.c.id).where(
                contact_campaigns.c.tenant_id == tenant_id,
                contact_campaigns.c.contact_id == contact_id,
                contact_campaigns.c.product_id == product_id,
                contact_campaigns.c.status.in_(RUNNING),
            )
        )
    ).first()


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


async def update_campaign(conn: AsyncConnection, *, campaign_id: str, now: datetime, **values: Any) -> None:
    await conn.execute(
        update(contact_campaigns).where(contact_campaigns.c.id == campaign_id).values(updated_at=now, **values)
    )


async def update_step(
    conn: AsyncConnection, *, campaign_id: str, step_index: int, now: datetime, **values: Any
) -> None:
    await conn.execute(
        update(campaign_steps)
        .where(campaign_steps.c.campaign_id == campaign_id, campaign_steps.c.step_index == step_index)
        .values(updated_at=now, **values)
    )


async def close_open_steps(
    conn: AsyncConnection, *, campaign_id: str, status: str, now: datetime, below: int | None = None
) -> None:
    """Mark every step not yet sent (optionally only those before `below`) canceled or skipped."""
    query = update(campaign_steps).where(
        campaign_steps.c.campaign_id == campaign_id, campaign_steps.c.status.in_(OPEN_STEP_STATUSES)
    )
    if below is not None:
        query = query.where(campaign_steps.c.step_index < below)
    await conn.execute(query.values(status=status, updated_at=now))


async def record_decision(conn: AsyncConnection, *, values: dict[str, Any]) -> bool:
    """False when this message already had a decision for this trigger (a redelivery)."""
    result = await conn.execute(
        insert(rule_decisions)
        .values(**values)
        .on_conflict_do_nothing(constraint="rule_decisions_message_trigger_key")
        .returning(rule_decisions.c.id)
    )
    return result.first() is not None


async def has_decision(conn: AsyncConnection, *, tenant_id: str, message_id: str, triggers: tuple[str, ...]) -> bool:
    return (
        await conn.execute(
            select(rule_decisions.c.id)
            .where(
                rule_decisions.c.tenant_id == tenant_id,
                rule_decisions.c.message_id == message_id,
                rule_decisions.c.trigger.in_(triggers),
            )
            .limit(1)
        )
    ).first() is not None
