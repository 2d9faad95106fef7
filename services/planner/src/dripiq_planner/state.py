"""Campaigns as mutable state inside one transaction, written back in a few statements.

The reactor handles a whole batch of timers, outcomes or engagement facts at once: it locks
the campaigns they touch (in id order, so concurrent workers never deadlock), loads their
steps, applies every change in memory, and `flush` writes the changed columns, the rule
decisions and the outbox messages with one executemany each. That is what lets one planner
apply thousands of facts a second instead of paying a round trip per column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.jetstream import Subjects
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner.models import campaign_steps, contact_campaigns, outbox, rule_decisions

OPEN_STEP_STATUSES = ("pending", "scheduled")
RUNNING = ("active", "paused")

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

    def send(self, message: OutboxMessage) -> None:
        self.outbox.append(message)


async def load(
    conn: AsyncConnection, keys: list[tuple[str, str]], *, lock: bool = True
) -> dict[tuple[str, str], CampaignState]:
    """The campaigns named by (tenant_id, campaign_id) with their steps; missing ones absent."""
    if not keys:
        return {}
    query = (
        select(*_LOADED_COLUMNS)
        .where(tuple_(contact_campaigns.c.tenant_id, contact_campaigns.c.id).in_(sorted(set(keys))))
        .order_by(contact_campaigns.c.id)
    )
    if lock:
        query = query.with_for_update()
    rows = (await conn.execute(query)).mappings().all()
    if not rows:
        return {}
    step_rows = (
        (
            await conn.execute(
                select(campaign_steps)
                .where(campaign_steps.c.campaign_id.in_([r["id"] for r in rows]))
                .order_by(campaign_steps.c.campaign_id, campaign_steps.c.step_index)
            )
        )
        .mappings()
        .all()
    )
    steps: dict[str, list[StepState]] = {}
    for row in step_rows:
        steps.setdefault(row["campaign_id"], []).append(StepState(dict(row)))
    return {(r["tenant_id"], r["id"]): CampaignState(dict(r), steps.get(r["id"], [])) for r in rows}


async def decided(conn: AsyncConnection, keys: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which (tenant_id, message_id, trigger) already have a decision.

    Race-free because every writer of decisions holds the campaign's row lock.
    """
    if not keys:
        return set()
    rows = await conn.execute(
        select(rule_decisions.c.tenant_id, rule_decisions.c.message_id, rule_decisions.c.trigger).where(
            tuple_(rule_decisions.c.tenant_id, rule_decisions.c.message_id, rule_decisions.c.trigger).in_(
                sorted(set(keys))
            )
        )
    )
    return {tuple(row) for row in rows}


async def flush(conn: AsyncConnection, campaigns: list[CampaignState], work: UnitOfWork) -> None:
    """Write what changed: grouped by the set of changed columns, one executemany per group."""
    await _update_changed(
        conn, contact_campaigns, [(c.id, c.changed, {"updated_at": work.now}) for c in campaigns if c.changed]
    )
    await _update_changed(
        conn,
        campaign_steps,
        [(s.id, s.changed, {"updated_at": work.now}) for c in campaigns for s in c.steps if s.changed],
    )
    if work.decisions:
        await conn.execute(
            insert(rule_decisions).on_conflict_do_nothing(constraint="rule_decisions_message_trigger_key"),
            work.decisions,
        )
    await enqueue(conn, outbox, _coalesced(work.outbox))
    for campaign in campaigns:
        campaign.changed.clear()
        for step in campaign.steps:
            step.changed.clear()


def _coalesced(messages: list[OutboxMessage]) -> list[OutboxMessage]:
    """One scheduler command per tenant carrying all its timer commands in order; the rest as is."""
    timer_ops: dict[str, list[commands_pb2.TimerCommand]] = {}
    others: list[OutboxMessage] = []
    for message in messages:
        if isinstance(message.message, commands_pb2.TimerCommand):
            timer_ops.setdefault(message.message.tenant_id, []).append(message.message)
        else:
            others.append(message)
    for tenant_id, ops in timer_ops.items():
        command = (
            ops[0]
            if len(ops) == 1
            else commands_pb2.TimerCommand(tenant_id=tenant_id, ops=commands_pb2.TimerOps(commands=ops))
        )
        others.append(OutboxMessage(Subjects.scheduler_command(tenant_id), command))
    return others


async def _update_changed(conn: AsyncConnection, table, items) -> None:  # type: ignore[no-untyped-def]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key, changed, extra in items:
        values = {**changed, **extra}
        columns = tuple(sorted(values))
        groups.setdefault(columns, []).append({"key_": key, **{f"v_{c}": values[c] for c in columns}})
    for columns, params in groups.items():
        stmt = update(table).where(table.c.id == bindparam("key_")).values({c: bindparam(f"v_{c}") for c in columns})
        await conn.execute(stmt.execution_options(synchronize_session=False), params)
