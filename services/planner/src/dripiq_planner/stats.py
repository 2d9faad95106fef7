"""A tenant's figures (GetTenantStats): its planning backlog, what was planned today and by
whom, the AI budget left today, its campaigns by status and its A/B winners, read in one snapshot; with a range
of UTC days, its engagement too, asked of the events service (its data, its rollups)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, Unavailable
from dripiq_planner import convert, repository, winners
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.models import ai_budget_usage, contact_campaigns
from dripiq_planner.owners import Owners
from dripiq_planner.state import CampaignStatus
from dripiq_planner.tenants import TenantDefaults


@dataclass
class TenantStats:
    engine: AsyncEngine
    clock: Clock
    # The planner's defaults, for a tenant whose settings give none.
    ai_budget: BudgetLimits
    tenant_concurrency: int
    # Who answers engagement; None: a planner without an events service refuses a range.
    owners: Owners | None = None

    async def answer(self, request: pb.GetTenantStatsRequest) -> pb.GetTenantStatsResponse:
        """GetTenantStats: the planning figures, and engagement when the request asks for it."""
        tenant = validation.tenant_id(request.tenant_id)
        asked = engagement_request(request)
        out = await self.get(tenant)
        if asked is not None:
            if self.owners is None:
                raise Unavailable("engagement analytics: this planner has no events service to ask")
            out.engagement.CopyFrom(await self.owners.tenant_engagement(asked))
        return out

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
            picked = await winners.listed(conn, tenant)
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
            variant_winners=[convert.winner_to_proto(row) for row in picked],
        )
        out.read_at.FromDatetime(now)
        return out


def engagement_request(request: pb.GetTenantStatsRequest) -> epb.GetTenantStatsRequest | None:
    """The events service's request for the engagement a GetTenantStats asks for (fields 2-7,
    named and numbered as the events request's); None when it gives no range. Grouping, a
    filter or paging without a range is a mistake, not a request for planning figures only."""
    if not (request.start_day or request.end_day):
        given = [name for name in ("group_by", "filter", "page_size", "page_token") if _given(request, name)]
        if given:
            raise InvalidArgument("start_day", f"required with {', '.join(given)}: engagement is counted over UTC days")
        return None
    asked = epb.GetTenantStatsRequest(
        tenant_id=request.tenant_id,
        start_day=request.start_day,
        end_day=request.end_day,
        group_by=list(request.group_by),
        page_size=request.page_size,
        page_token=request.page_token,
    )
    if request.HasField("filter"):
        asked.filter.CopyFrom(request.filter)
    return asked


def _given(request: pb.GetTenantStatsRequest, name: str) -> bool:
    if name == "filter":
        return request.HasField("filter")
    return bool(getattr(request, name))
