"""Previewing a strategy: a campaign planned and placed in time, not created. Only its
strategist calls are stored, since every call is audited.

A preview exists to see what the model writes: with the tenant's AI budget spent it answers
RESOURCE_EXHAUSTED (naming the budget and when it resets) rather than the template's copy,
after recording that it was turned away."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import Clock
from dripiq_common.errors import DomainError
from dripiq_planner import convert, repository
from dripiq_planner.planning import Planner


@dataclass
class StrategyPreview:
    engine: AsyncEngine
    clock: Clock
    planner: Planner

    async def preview(self, request: pb.PreviewStrategyRequest) -> pb.PreviewStrategyResponse:
        [draft] = await self.planner.drafts(request.request.tenant_id, convert.campaign_requests([request.request]))
        if isinstance(draft, DomainError):
            raise draft
        if draft.generations:
            async with self.engine.begin() as conn:
                await repository.insert_generations(
                    conn, generations=draft.generation_rows(campaign_id=None, now=self.clock.now())
                )
        if draft.budget_spent is not None:
            raise draft.budget_spent.error()
        return convert.preview_to_proto(draft, draft.step_times(self.clock.now()))
