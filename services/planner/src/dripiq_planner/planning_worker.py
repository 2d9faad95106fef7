"""Planning as work: the planning workers plan campaigns stored as `planning`, from messages
("plan campaign X of tenant T", PLANNER_PLANNING) fetched and handled in batches.

A batch is read in one query. With the template strategist (no model) its campaigns are planned
at once, in memory: nothing waits, so nothing is held. With a model, a worker first claims each
campaign in PostgreSQL: under the advisory locks of the batch's tenants it counts each tenant's
campaigns other workers hold (`planning_until` still ahead) and takes holds only below the
tenant's concurrency. Campaigns past it have their messages put back at the end of the queue
through the outbox (after a short pause, so a lone tenant's backlog does not spin), so the
messages of other tenants behind them go on, and the redelivery count is not used up by
waiting. The claimed ones are planned side by side (the model client bounds the calls in
flight). A worker that dies leaves its holds to expire (before the consumer's ack wait) and its
messages to be redelivered.

Storing is one transaction per batch, one statement per table: it locks the batch's campaigns
and writes steps, strategy and each first step's timer only for those still waiting for their
strategy; a second plan of a campaign (a redelivery, a duplicate message) only adds its
strategist calls to the audit trail. The batch handler answers per message (decision 0039), so
a worker killed mid-batch leaves only its unacked messages to plan again, and those it had
stored are skipped.

A campaign paused while it was planning is planned all the same and stored paused, its steps
waiting and no timer armed until it is resumed (a draft instead, when the tenant requires
approval); one canceled is skipped.

When the model gives no answer (API errors past the strategist's retries, the deadline), the
message is retried with the consumer's delays, its attempts kept in `ai_generations`; its last
delivery plans with the template instead, with the reason recorded on the campaign.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import structlog
from nats.aio.msg import Msg
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import facts_pb2, planning_pb2
from dripiq_common.bus.contract import ConsumerSpec, Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import DomainError, PermanentMessageError
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner import lifecycle, repository
from dripiq_planner.creating import planned_steps
from dripiq_planner.metrics import PLANNED, PLANNING_IN_FLIGHT, PLANNING_OUTCOMES
from dripiq_planner.models import outbox
from dripiq_planner.planning import Draft, Planner, generation_row
from dripiq_planner.state import CampaignStatus, StepStatus
from dripiq_planner.strategist import Generation, ModelUnavailable

log = structlog.get_logger(__name__)


class Claim(StrEnum):
    TAKEN = "taken"
    # The tenant plans as many as it may at once, or another worker holds this campaign.
    BUSY = "busy"
    # Planned, canceled or gone: nothing to do.
    DONE = "done"


def waiting_for_strategy(row: Row) -> bool:
    """Still to be planned: planning, or paused before its strategy came."""
    return row.planned_at is None and row.status in (CampaignStatus.PLANNING, CampaignStatus.PAUSED)


@dataclass
class PlanningWorker:
    engine: AsyncEngine
    clock: Clock
    planner: Planner
    spec: ConsumerSpec
    # Campaigns of one tenant planned with the model at once across replicas, unless its
    # settings say otherwise.
    tenant_concurrency: int = 8
    # How long a tenant at its limit keeps a message before putting it back at the end of the queue.
    defer_seconds: float = 0.5
    on_commit: Callable[[], None] = field(default=lambda: None)

    @property
    def hold(self) -> timedelta:
        """A worker's hold on a campaign: past it (a dead worker), the redelivery may plan it."""
        return timedelta(seconds=max(self.spec.ack_wait_seconds - 10, 1))

    async def handle(self, msg: Msg) -> None:
        """One message as a batch of one."""
        [answer] = await self.handle_batch([msg])
        if answer is not None:
            raise answer

    async def handle_batch(self, msgs: Sequence[Msg]) -> list[Exception | None]:
        """Plan the batch's campaigns and store them together; one answer per message."""
        answers: list[Exception | None] = [None] * len(msgs)
        wanted: dict[tuple[str, str], list[int]] = {}
        commands: dict[tuple[str, str], planning_pb2.PlanCampaign] = {}
        for position, msg in enumerate(msgs):
            command = decode(planning_pb2.PlanCampaign, msg.data)
            if not command.campaign_id:
                answers[position] = PermanentMessageError("PlanCampaign.campaign_id is empty")
                continue
            key = (command.tenant_id, command.campaign_id)
            wanted.setdefault(key, []).append(position)
            commands[key] = command
        if not wanted:
            return answers
        if self.planner.uses_model:
            claims = await self.claim_many(list(wanted))
            busy = [commands[key] for key, (claim, _) in claims.items() if claim is Claim.BUSY]
            rows = [row for claim, row in claims.values() if claim is Claim.TAKEN and row is not None]
            if busy:
                # The pause before putting them back keeps a lone tenant's backlog from
                # spinning; the campaigns this batch holds are planned meanwhile, not after it.
                deferring = asyncio.create_task(self._defer_after_pause(busy))
                try:
                    await self._plan(msgs, wanted, rows, answers, deferred=len(busy))
                finally:
                    # Should putting them back fail, the whole batch is redelivered: the
                    # campaigns stored here are then skipped, the others claimed again.
                    await deferring
                return answers
        else:
            # Planning is CPU only: a second worker planning the same campaign costs a little
            # work and stores nothing, so no hold is worth its transaction.
            async with self.engine.connect() as conn:
                rows = [r for r in await repository.get_campaigns(conn, keys=list(wanted)) if waiting_for_strategy(r)]
        await self._plan(msgs, wanted, rows, answers)
        return answers

    async def _plan(
        self,
        msgs: Sequence[Msg],
        wanted: dict[tuple[str, str], list[int]],
        rows: list[Row],
        answers: list[Exception | None],
        *,
        deferred: int = 0,
    ) -> None:
        """Plan and store the campaigns of `rows`, setting the answers of their messages."""
        # Counted once: a deferred campaign is "deferred", not also "skipped".
        skipped = len(wanted) - len(rows) - deferred
        if skipped:
            PLANNING_OUTCOMES.labels(outcome="skipped").inc(skipped)
        if not rows:
            return
        last_tries = {
            row.id
            for row in rows
            if max(msgs[p].metadata.num_delivered for p in wanted[(row.tenant_id, row.id)]) >= self.spec.max_deliver
        }
        PLANNING_IN_FLIGHT.inc(len(rows))
        try:
            planned = await self.planner.plan_many(rows, last_tries=last_tries)
        finally:
            PLANNING_IN_FLIGHT.dec(len(rows))
        drafts = [d for d in planned if isinstance(d, Draft)]
        failed: list[tuple[Row, Exception]] = [
            (row, result) for row, result in zip(rows, planned, strict=True) if isinstance(result, Exception)
        ]
        await self.store_many(drafts, failed=failed)
        for row, exc in failed:
            # A duplicate message of the same campaign is done: the first one's retry plans it.
            answers[wanted[(row.tenant_id, row.id)][0]] = self._answer(row, exc)

    async def _defer_after_pause(self, commands: list[planning_pb2.PlanCampaign]) -> None:
        await asyncio.sleep(self.defer_seconds)
        await self.defer(commands)

    def _answer(self, row: Row, exc: Exception) -> Exception:
        if isinstance(exc, ModelUnavailable):
            PLANNING_OUTCOMES.labels(outcome="retried").inc()
            log.warning("planning.model_unavailable", tenant_id=row.tenant_id, campaign_id=row.id, error=str(exc))
            return exc
        if isinstance(exc, DomainError):
            # The strategy cannot be used (a rule it breaks): no retry changes that.
            return PermanentMessageError(f"campaign {row.id} cannot be planned: {exc}")
        return exc

    async def claim(self, tenant_id: str, campaign_id: str) -> tuple[Claim, Row | None]:
        return (await self.claim_many([(tenant_id, campaign_id)]))[(tenant_id, campaign_id)]

    async def claim_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[Claim, Row | None]]:
        """Holds on the campaigns each tenant may still plan now, in one transaction: the
        tenants' advisory locks in name order, then the campaigns' row locks in id order (as
        every other writer of campaigns takes them)."""
        now = self.clock.now()
        tenants = sorted({tenant for tenant, _ in keys})
        claims: dict[tuple[str, str], tuple[Claim, Row | None]] = {key: (Claim.DONE, None) for key in keys}
        async with self.engine.begin() as conn:
            for tenant in tenants:
                # Serialises the count and the holds of one tenant's campaigns across replicas.
                await repository.lock_planning(conn, tenant_id=tenant)
            rows = await repository.get_campaigns(conn, keys=keys, for_update=True)
            held = await repository.planning_held(conn, tenant_ids=tenants, now=now)
            limits = await repository.tenant_defaults(conn, tenant_ids=tenants)
            taken: list[str] = []
            for row in rows:
                key = (row.tenant_id, row.id)
                if not waiting_for_strategy(row):
                    continue
                limit = limits[row.tenant_id].planning_concurrency or self.tenant_concurrency
                if (row.planning_until is not None and row.planning_until > now) or held.get(row.tenant_id, 0) >= limit:
                    claims[key] = (Claim.BUSY, None)
                    continue
                held[row.tenant_id] = held.get(row.tenant_id, 0) + 1
                taken.append(row.id)
                claims[key] = (Claim.TAKEN, row)
            await repository.hold_planning(conn, campaign_ids=taken, until=now + self.hold)
        return claims

    async def defer(self, commands: list[planning_pb2.PlanCampaign]) -> None:
        """The same work again at the end of the queue; these messages are then done."""
        async with self.engine.begin() as conn:
            await enqueue(conn, outbox, [OutboxMessage(Subjects.planner_plan(c.tenant_id), c) for c in commands])
        self.on_commit()
        PLANNING_OUTCOMES.labels(outcome="deferred").inc(len(commands))

    async def store(self, draft: Draft) -> bool:
        """One draft stored as `store_many` stores a batch; True when this call planned it."""
        return bool(await self.store_many([draft]))

    async def store_many(self, drafts: list[Draft], *, failed: Sequence[tuple[Row, Exception]] = ()) -> list[str]:
        """Steps, strategies and first timers of the drafts whose campaigns still wait for
        their strategy, in one transaction; every strategist call is audited either way, the
        failed plans' attempts too, and their holds are let go. The ids planned by this call."""
        now = self.clock.now()
        generations: list[dict[str, Any]] = [
            row for draft in drafts for row in draft.generation_rows(campaign_id=draft.id, now=now)
        ]
        for row, exc in failed:
            attempts: tuple[Generation, ...] = exc.generations if isinstance(exc, ModelUnavailable) else ()
            generations += [generation_row(g, tenant_id=row.tenant_id, campaign_id=row.id, now=now) for g in attempts]
        async with self.engine.begin() as conn:
            await repository.insert_generations_bulk(conn, generations=generations)
            await repository.hold_planning(conn, campaign_ids=sorted(row.id for row, _ in failed), until=None)
            planned = await self._write(conn, drafts, now) if drafts else []
        self.on_commit()
        skipped = len(drafts) - len(planned)
        if skipped:
            PLANNING_OUTCOMES.labels(outcome="skipped").inc(skipped)
        by_id = {draft.id: draft for draft in drafts}
        for campaign_id in planned:
            draft = by_id[campaign_id]
            reason = draft.strategist_reason.split(":", 1)[0] if draft.strategist_reason else "none"
            PLANNED.labels(strategist=draft.strategist, reason=reason).inc()
        if planned:
            PLANNING_OUTCOMES.labels(outcome="planned").inc(len(planned))
            log.info("planning.planned", count=len(planned), tenants=sorted({by_id[i].tenant_id for i in planned}))
        return planned

    async def _write(self, conn: AsyncConnection, drafts: list[Draft], now: Any) -> list[str]:
        rows = await repository.get_campaigns(conn, keys=[(d.tenant_id, d.id) for d in drafts], for_update=True)
        waiting = {row.id: row for row in rows if waiting_for_strategy(row)}
        # One draft per campaign: a duplicate message in the same batch plans it once.
        fresh = list({d.id: d for d in drafts if d.id in waiting}.values())
        if not fresh:
            return []
        tenants = await repository.tenant_defaults(conn, tenant_ids={d.tenant_id for d in fresh})
        steps: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        timers: dict[str, list[Any]] = {}
        facts: list[OutboxMessage] = []
        for draft in fresh:
            require_approval = tenants[draft.tenant_id].require_approval
            if waiting[draft.id].status == CampaignStatus.PAUSED and not require_approval:
                status = CampaignStatus.PAUSED
            else:
                # Planned, it starts as a created campaign does: active, or a draft for approval
                # (which sends nothing until a person approves it, paused or not).
                status = lifecycle.status_when_ready(require_approval=require_approval)
            draft_steps, first = planned_steps(draft, now, status)
            if status == CampaignStatus.PAUSED:
                # Its resume arms the first step, from then on.
                draft_steps[0].update(
                    status=StepStatus.PENDING.value, scheduled_at=None, placement_note="", schedule_version=0
                )
            steps += draft_steps
            version = waiting[draft.id].pause_version
            if version:
                # Paused (or resumed) while planning, the dispatcher holds a status of it: tell
                # it the new one, or an active campaign would stay stopped there.
                version += 1
                fact = facts_pb2.CampaignStatusChanged(
                    tenant_id=draft.tenant_id, campaign_id=draft.id, status=status, version=version, reason="planned"
                )
                fact.occurred_at.FromDatetime(now)
                facts.append(OutboxMessage(Subjects.campaign_status(draft.tenant_id), fact))
            updates.append(
                {
                    "id": draft.id,
                    "pause_version": version,
                    "status": status.value,
                    "strategy_json": draft.strategy.to_json(),
                    "rules_json": [rule.model_dump(mode="json") for rule in draft.strategy.adaptive_rules],
                    "strategist": draft.strategist,
                    "strategist_reason": draft.strategist_reason,
                }
            )
            if status == CampaignStatus.ACTIVE:
                timer = lifecycle.step_timer(draft, step_index=0, version=1, fire_at=first.at)
                timers.setdefault(draft.tenant_id, []).append(timer)
        await repository.insert_steps_bulk(conn, steps=steps)
        await repository.mark_planned(conn, campaigns=updates, now=now)
        await enqueue(
            conn, outbox, [*facts, *(lifecycle.timer_commands(tenant, batch) for tenant, batch in timers.items())]
        )
        return [d.id for d in fresh]
