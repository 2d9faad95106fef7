"""Campaigns as mutable state inside one transaction, written back in a few statements.

The reactor handles a whole batch of timers, outcomes or engagement facts at once: it locks
the campaigns they touch (in id order, so concurrent workers never deadlock), loads their
steps, applies every change in memory, and `flush` writes the changed columns, the rule
decisions and the outbox messages with one statement each (dripiq_common.bulk). That is what lets one planner
apply thousands of facts a second instead of paying a round trip per column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_common import bulk
from dripiq_common.outbox import OutboxMessage, coalesce_timer_commands, enqueue
from dripiq_planner.models import campaign_steps, contact_campaigns, outbox, rule_decisions


class CampaignStatus(StrEnum):
    """A campaign's `status` (the table's check constraint lists the same)."""

    # Stored without a strategy: a planning worker writes it (planning_worker).
    PLANNING = "planning"
    ACTIVE = "active"
    PAUSED = "paused"
    # A send failed for a reason outside the message: held until a person retries or resumes.
    NEEDS_ATTENTION = "needs_attention"
    COMPLETED = "completed"
    CANCELED = "canceled"
    # Planned and stored, waiting for a person's approval: no timer, nothing sent.
    DRAFT = "draft"


class StepStatus(StrEnum):
    """A campaign step's `status`."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


# A campaign is named by (tenant_id, campaign_id); a rule decision by (tenant_id, message_id, trigger).
CampaignKey = tuple[str, str]
DecisionKey = tuple[str, str, str]

OPEN_STEP_STATUSES = (StepStatus.PENDING, StepStatus.SCHEDULED)
# Not ended: a campaign waiting for a person (needs_attention) is held like a paused one; one
# still planning, and a draft, already hold their contact and product.
RUNNING = (
    CampaignStatus.PLANNING,
    CampaignStatus.ACTIVE,
    CampaignStatus.PAUSED,
    CampaignStatus.NEEDS_ATTENTION,
    CampaignStatus.DRAFT,
)
HELD = (CampaignStatus.PAUSED, CampaignStatus.NEEDS_ATTENTION)

_STEP_COLUMNS = {c.name for c in campaign_steps.c}
_CAMPAIGN_COLUMNS = {c.name for c in contact_campaigns.c}
# Everything but the strategy document, which nothing after planning reads: decoding it for
# every fact would cost more than all the rules.
_LOADED_COLUMNS = [c for c in contact_campaigns.c if c.name != "strategy_json"]


class Tracked:
    """Attribute access to a row's values, remembering which ones changed."""

    _table_columns: set[str] = set()

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__["_values"] = dict(values)
        self.__dict__["changed"] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, **values: Any) -> None:
        unknown = set(values) - self._table_columns
        if unknown:
            raise AttributeError(f"no such columns: {sorted(unknown)}")
        self.__dict__["_values"].update(values)
        self.__dict__["changed"].update(values)


class StepState(Tracked):
    _table_columns = _STEP_COLUMNS


class CampaignState(Tracked):
    _table_columns = _CAMPAIGN_COLUMNS

    def __init__(self, values: dict[str, Any], steps: list[StepState]) -> None:
        super().__init__(values)
        self.__dict__["steps"] = steps

    def step(self, index: int) -> StepState | None:
        return next((s for s in self.steps if s.step_index == index), None)

    def step_for_message(self, message_id: str) -> StepState | None:
        return next((s for s in self.steps if s.message_id == message_id), None)

    def next_open_step(self, after_index: int) -> StepState | None:
        return next((s for s in self.steps if s.step_index > after_index and s.status in OPEN_STEP_STATUSES), None)

    def first_open_step(self) -> StepState | None:
        return self.next_open_step(-1)


@dataclass
class UnitOfWork:
    now: datetime
    outbox: list[OutboxMessage] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # Campaigns a reply ended in this unit of work: their colleagues in the tenant's
    # reply_stops scope end with them (collisions.stop_others).
    ended_by_reply: list[CampaignState] = field(default_factory=list)

    def send(self, message: OutboxMessage) -> None:
        self.outbox.append(message)

    def decide(
        self,
        campaign: CampaignState,
        *,
        message_id: str,
        step_index: int,
        trigger: str,
        source: str,
        rule_json: dict[str, Any],
        action: str,
        result: str,
    ) -> None:
        """Record what a trigger came to for one message (at most once: a later one is dropped)."""
        self.decisions.append(
            {
                "tenant_id": campaign.tenant_id,
                "campaign_id": campaign.id,
                "message_id": message_id,
                "step_index": step_index,
                "trigger": trigger,
                "source": source,
                "rule_json": rule_json,
                "action": action,
                "result": result,
                "created_at": self.now,
            }
        )


_CAMPAIGN_SELECT = (
    f"SELECT {', '.join(c.name for c in _LOADED_COLUMNS)} FROM planner.contact_campaigns "
    "WHERE id = ANY($1::text[]) AND tenant_id = ANY($2::text[]) ORDER BY id"
)
_STEP_SELECT = (
    f"SELECT {', '.join(c.name for c in campaign_steps.c)} FROM planner.campaign_steps "
    "WHERE campaign_id = ANY($1::text[]) ORDER BY campaign_id, step_index"
)
_DECIDED_SELECT = (
    "SELECT tenant_id, message_id, trigger FROM planner.rule_decisions "
    "WHERE message_id = ANY($1::text[]) AND tenant_id = ANY($2::text[])"
)


async def load(
    conn: AsyncConnection, keys: list[CampaignKey], *, lock: bool = True
) -> dict[CampaignKey, CampaignState]:
    """The campaigns named by (tenant_id, campaign_id) with their steps; missing ones absent."""
    if not keys:
        return {}
    wanted = set(keys)
    driver = await bulk.driver(conn)
    query = _CAMPAIGN_SELECT + (" FOR UPDATE" if lock else "")
    found = await driver.fetch(query, sorted({c for _, c in wanted}), sorted({t for t, _ in wanted}))
    rows = [dict(r) for r in found if (r["tenant_id"], r["id"]) in wanted]
    if not rows:
        return {}
    steps: dict[str, list[StepState]] = {}
    for row in await driver.fetch(_STEP_SELECT, [r["id"] for r in rows]):
        steps.setdefault(row["campaign_id"], []).append(StepState(dict(row)))
    return {(r["tenant_id"], r["id"]): CampaignState(r, steps.get(r["id"], [])) for r in rows}


async def decided(conn: AsyncConnection, keys: list[DecisionKey]) -> set[DecisionKey]:
    """Which (tenant_id, message_id, trigger) already have a decision.

    Race-free because every writer of decisions holds the campaign's row lock.
    """
    if not keys:
        return set()
    wanted = set(keys)
    rows = await (await bulk.driver(conn)).fetch(
        _DECIDED_SELECT, sorted({m for _, m, _ in wanted}), sorted({t for t, _, _ in wanted})
    )
    return {key for key in (tuple(row) for row in rows) if key in wanted}


async def flush(conn: AsyncConnection, campaigns: list[CampaignState], work: UnitOfWork) -> None:
    """Write what changed: one UPDATE ... FROM unnest(...) per table and set of changed columns."""
    await bulk.update_rows(
        conn, contact_campaigns, [(c.id, {**c.changed, "updated_at": work.now}) for c in campaigns if c.changed]
    )
    await bulk.update_rows(
        conn,
        campaign_steps,
        [(s.id, {**s.changed, "updated_at": work.now}) for c in campaigns for s in c.steps if s.changed],
    )
    if work.decisions:
        await _insert_decisions(conn, work.decisions)
    await enqueue(conn, outbox, coalesce_timer_commands(work.outbox))
    for campaign in campaigns:
        campaign.changed.clear()
        for step in campaign.steps:
            step.changed.clear()


_DECISION_COLUMNS = (
    "tenant_id",
    "campaign_id",
    "message_id",
    "step_index",
    "trigger",
    "source",
    "rule_json",
    "action",
    "result",
    "created_at",
)


async def _insert_decisions(conn: AsyncConnection, decisions: list[dict[str, Any]]) -> None:
    rows = [{c: json.dumps(d[c]) if c == "rule_json" else d[c] for c in _DECISION_COLUMNS} for d in decisions]
    await bulk.insert_rows(
        conn,
        rule_decisions,
        rows,
        casts={"rule_json": "text"},
        suffix="ON CONFLICT ON CONSTRAINT rule_decisions_message_trigger_key DO NOTHING",
    )
