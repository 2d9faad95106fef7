"""A tenant's figures (GetTenantStats): its planning backlog, what was planned today and by
whom, the AI budget left today, and its campaigns by status. Read in one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_planner import convert, repository
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.models import ai_budget_usage, contact_campaigns
from dripiq_planner.state import CampaignStatus
from dripiq_planner.tenants import TenantDefaults


@dataclass
class TenantStats:
    engine: AsyncEngine
    clock: Clock
    # The planner's defaults, for a tenant whose settings give none.
    ai_budget: BudgetLimits
    tenant_concurrency: int

    async def get(self, tenant_id: str) -> pb.GetTenantStatsResponse:
        tenant = validation.tenant_id(tenant_id)
        now = self.clock.now()
        day = now.astimezone(UTC).date()
        midnight = datetime.combine(day, time(), tzinfo=UTC)
        c = contact_campaigns.c
        async with self.engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            by_status = (
                await conn.execute(select(c.status, func.count()).where(c.tenant_id == tenant).group_by(c.status))
            ).all()
            waiting = (
                await conn.execute(
                    select(func.count(), func.min(c.created_at)).where(
                        c.tenant_id == tenant, c.status == CampaignStatus.PLANNING
                    )
                )
            ).one()
            planned = (
                await conn.execute(
                    select(c.strategist, func.count())
                    .where(c.tenant_id == tenant, c.planned_at >= midnight)
                    .group_by(c.strategist)
                    .order_by(c.strategist)
                )
            ).all()
            usage = (
                await conn.execute(
                    select(ai_budget_usage.c.calls, ai_budget_usage.c.tokens).where(
                        ai_budget_usage.c.tenant_id == tenant, ai_budget_usage.c.day == day
                    )
                )
            ).first()
            defaults = TenantDefaults.from_row(await repository.get_tenant_settings(conn, tenant_id=tenant))
        limits = defaults.ai_budget(self.ai_budget)
        calls, tokens = (usage.calls, usage.tokens) if usage else (0, 0)
        planning = pb.PlanningStats(
            waiting=waiting[0],
            planned_today=[pb.StrategistCount(strategist=name, count=count) for name, count in planned],
            ai_calls_left_today=max(limits.calls - calls, 0),
            ai_tokens_left_today=max(limits.tokens - tokens, 0),
            concurrency=defaults.planning_concurrency or self.tenant_concurrency,
        )
        if waiting[1] is not None:
            planning.oldest_waiting_since.FromDatetime(waiting[1])
        out = pb.GetTenantStatsResponse(
            tenant_id=tenant,
            planning=planning,
            campaigns_by_status=[
                pb.CampaignStatusCount(status=convert.status_to_proto(status), count=count)
                for status, count in sorted(by_status)
            ],
        )
        out.read_at.FromDatetime(now)
        return out
