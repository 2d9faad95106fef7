"""Planning as work: the planning workers plan campaigns stored as `planning`, one message
("plan campaign X of tenant T", PLANNER_PLANNING) each.

A worker first claims the campaign in PostgreSQL: under the tenant's advisory lock it counts
the tenant's campaigns other workers hold (`planning_until` still ahead) and takes a hold only
below the tenant's concurrency. A tenant at its limit has the message put back at the end of
the queue through the outbox (after a short pause, so a lone tenant's backlog does not spin),
so the messages of other tenants behind it go on, and the redelivery count is not used up by
waiting. A worker that dies leaves its hold to expire (before the consumer's ack wait) and its
message to be redelivered.

Storing is idempotent: the transaction locks the campaign and writes steps, strategy and the
first step's timer only while it is still `planning`; a second plan of the same campaign (a
redelivery, a duplicate message) only adds its strategist calls to the audit trail.

When the model gives no answer (API errors past the client's own retries, the deadline), the
message is retried with the consumer's delays; its last delivery plans with the template
instead, with the reason recorded on the campaign.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from nats.aio.msg import Msg
from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import planning_pb2
from dripiq_common.bus.contract import ConsumerSpec, Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import DomainError, PermanentMessageError
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner import lifecycle, repository
from dripiq_planner.creating import planned_steps
from dripiq_planner.metrics import PLANNED, PLANNING_IN_FLIGHT, PLANNING_OUTCOMES
from dripiq_planner.models import contact_campaigns, outbox
from dripiq_planner.planning import Draft, Planner
from dripiq_planner.state import CampaignStatus
from dripiq_planner.strategist import ModelUnavailable
from dripiq_planner.tenants import TenantDefaults

log = structlog.get_logger(__name__)


class Claim(StrEnum):
    TAKEN = "taken"
    # The tenant plans as many as it may at once, or another worker holds this campaign.
    BUSY = "busy"
    # Planned, canceled or gone: nothing to do.
    DONE = "done"


@dataclass
class PlanningWorker:
    engine: AsyncEngine
    clock: Clock
    planner: Planner
    spec: ConsumerSpec
    # Campaigns of one tenant planned at once across replicas, unless its settings say otherwise.
    tenant_concurrency: int = 8
    # How long a tenant at its limit keeps a message before putting it back at the end of the queue.
    defer_seconds: float = 0.5
    on_commit: Callable[[], None] = field(default=lambda: None)

    @property
    def hold(self) -> timedelta:
        """A worker's hold on a campaign: past it (a dead worker), the redelivery may plan it."""
        return timedelta(seconds=max(self.spec.ack_wait_seconds - 10, 1))

    async def handle(self, msg: Msg) -> None:
        command = decode(planning_pb2.PlanCampaign, msg.data)
        if not command.campaign_id:
            raise PermanentMessageError("PlanCampaign.campaign_id is empty")
        tenant_id, campaign_id = command.tenant_id, command.campaign_id
        claim, row = await self.claim(tenant_id, campaign_id)
        if claim is Claim.DONE:
            PLANNING_OUTCOMES.labels(outcome="skipped").inc()
            return
        if claim is Claim.BUSY:
            await asyncio.sleep(self.defer_seconds)
            await self.defer(command)
            return
        assert row is not None
        last_try = msg.metadata.num_delivered >= self.spec.max_deliver
        PLANNING_IN_FLIGHT.inc()
        try:
            draft = await self.planner.plan_stored(row, raise_when_unavailable=not last_try)
        except ModelUnavailable as exc:
            await self.release(tenant_id, campaign_id)
            PLANNING_OUTCOMES.labels(outcome="retried").inc()
            log.warning("planning.model_unavailable", tenant_id=tenant_id, campaign_id=campaign_id, error=str(exc))
            raise
        except DomainError as exc:
            # The strategy cannot be used (a rule it breaks): no retry changes that.
            await self.release(tenant_id, campaign_id)
            raise PermanentMessageError(f"campaign {campaign_id} cannot be planned: {exc}") from exc
        except BaseException:
            await self.release(tenant_id, campaign_id)
            raise
        finally:
            PLANNING_IN_FLIGHT.dec()
        await self.store(draft)

    async def claim(self, tenant_id: str, campaign_id: str) -> tuple[Claim, Row | None]:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            # Serialises the count and the hold of one tenant's campaigns across replicas.
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext("planning:" + tenant_id))))
            row = await repository.get_campaign(conn, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True)
            if row is None or row.status != CampaignStatus.PLANNING:
                return Claim.DONE, None
            if row.planning_until is not None and row.planning_until > now:
                return Claim.BUSY, None
            held = await _held(conn, tenant_id, now)
            if held >= await self._concurrency(conn, tenant_id):
                return Claim.BUSY, None
            await conn.execute(
                update(contact_campaigns)
                .where(contact_campaigns.c.id == campaign_id)
                .values(planning_until=now + self.hold)
            )
        return Claim.TAKEN, row

    async def release(self, tenant_id: str, campaign_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(contact_campaigns)
                .where(
                    contact_campaigns.c.tenant_id == tenant_id,
                    contact_campaigns.c.id == campaign_id,
                    contact_campaigns.c.status == CampaignStatus.PLANNING,
                )
                .values(planning_until=None)
            )

    async def defer(self, command: planning_pb2.PlanCampaign) -> None:
        """The same work again at the end of the queue; this message is then done."""
        async with self.engine.begin() as conn:
            await enqueue(conn, outbox, [OutboxMessage(Subjects.planner_plan(command.tenant_id), command)])
        self.on_commit()
        PLANNING_OUTCOMES.labels(outcome="deferred").inc()

    async def store(self, draft: Draft) -> bool:
        """Steps, strategy and the first timer, only while the campaign is still planning; the
        strategist calls are audited either way. True when this call planned it."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await repository.insert_generations(conn, generations=draft.generation_rows(campaign_id=draft.id, now=now))
            row = await repository.get_campaign(conn, tenant_id=draft.tenant_id, campaign_id=draft.id, for_update=True)
            if row is None or row.status != CampaignStatus.PLANNING:
                PLANNING_OUTCOMES.labels(outcome="skipped").inc()
                log.info("planning.already_planned", tenant_id=draft.tenant_id, campaign_id=draft.id)
                return False
            tenant = (await repository.tenant_defaults(conn, tenant_ids=[draft.tenant_id]))[draft.tenant_id]
            # Planned, it starts as a created campaign does: active, or a draft for approval.
            status = lifecycle.status_when_ready(require_approval=tenant.require_approval)
            steps, first = planned_steps(draft, now, status)
            await repository.insert_steps(conn, steps=steps)
            await conn.execute(
                update(contact_campaigns)
                .where(contact_campaigns.c.id == draft.id)
                .values(
                    status=status,
                    strategy_json=draft.strategy.to_json(),
                    rules_json=[rule.model_dump(mode="json") for rule in draft.strategy.adaptive_rules],
                    strategist=draft.strategist,
                    strategist_reason=draft.strategist_reason,
                    planned_at=now,
                    planning_until=None,
                    updated_at=now,
                )
            )
            if status == CampaignStatus.ACTIVE:
                timer = lifecycle.step_timer(draft, step_index=0, version=1, fire_at=first.at)
                await enqueue(conn, outbox, [lifecycle.timer_commands(draft.tenant_id, [timer])])
        self.on_commit()
        reason = draft.strategist_reason.split(":", 1)[0] if draft.strategist_reason else "none"
        PLANNED.labels(strategist=draft.strategist, reason=reason).inc()
        PLANNING_OUTCOMES.labels(outcome="planned").inc()
        log.info(
            "planning.planned",
            tenant_id=draft.tenant_id,
            campaign_id=draft.id,
            strategist=draft.strategist,
            reason=draft.strategist_reason,
        )
        return True

    async def _concurrency(self, conn: AsyncConnection, tenant_id: str) -> int:
        defaults = TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant_id))
        return defaults.planning_concurrency or self.tenant_concurrency


async def _held(conn: AsyncConnection, tenant_id: str, now: datetime) -> int:
    """The tenant's campaigns a live worker is planning now."""
    query = select(func.count()).where(
        contact_campaigns.c.tenant_id == tenant_id,
        contact_campaigns.c.status == CampaignStatus.PLANNING,
        contact_campaigns.c.planning_until > now,
    )
    return int((await conn.execute(query)).scalar_one())
