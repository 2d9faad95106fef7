"""The campaigns the planner reported stopped (paused, cancelled, ended), newest version wins."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_dispatcher.models import (
    campaign_states,
)
from dripiq_dispatcher.repository.pairs import fetch_by_pairs

_STOPPED_CAMPAIGNS = (
    "SELECT c.tenant_id, c.campaign_id, c.status, c.reason "
    "FROM dispatcher.campaign_states AS c JOIN unnest($1::text[], $2::text[]) AS v(tenant_id, campaign_id) "
    "ON c.tenant_id = v.tenant_id AND c.campaign_id = v.campaign_id WHERE c.status <> 'active'"
)


async def stopped_campaigns(
    conn: AsyncConnection, *, keys: Collection[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """(status, reason) of each (tenant_id, campaign_id) that is not running; the others are
    absent (a campaign with no row has never stopped)."""
    if not keys:
        return {}
    rows = await fetch_by_pairs(conn, _STOPPED_CAMPAIGNS, keys)
    return {(row["tenant_id"], row["campaign_id"]): (row["status"], row["reason"]) for row in rows}


async def record_campaign_states(conn: AsyncConnection, *, rows: Sequence[dict[str, Any]]) -> int:
    """Upsert statuses, keeping each campaign's highest version; how many rows changed."""
    if not rows:
        return 0
    statement = insert(campaign_states).values(list(rows))
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "campaign_id"],
        set_={
            "status": statement.excluded.status,
            "version": statement.excluded.version,
            "reason": statement.excluded.reason,
            "updated_at": statement.excluded.updated_at,
        },
        where=campaign_states.c.version < statement.excluded.version,
    )
    return (await conn.execute(statement)).rowcount
