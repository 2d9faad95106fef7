"""Previewing a strategy: a campaign planned and placed in time, not created unless asked to
be saved as a draft. Its strategist calls are stored either way, since every call is audited.

A preview exists to see what the model writes: with the tenant's AI budget spent it answers
RESOURCE_EXHAUSTED (naming the budget and when it resets) rather than the template's copy,
after recording that it was turned away."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import Clock
from dripiq_common.errors import DomainError, FailedPrecondition
from dripiq_planner import convert, repository
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.planning import Planner


@dataclass
class StrategyPreview:
    engine: AsyncEngine
    clock: Clock
    planner: Planner
    # Stores a preview asked to be saved as a draft; None: such a request is refused.
    creator: CampaignCreator | None = None

    async def preview(self, request: pb.PreviewStrategyRequest, *, actor: str) -> pb.PreviewStrategyResponse:
        """The planned campaign; with save_as_draft also stored as a draft, checked as a create
        is (request_id, one running campaign per contact and product), and the timeline names
        `actor` as who saved it."""
        if request.save_as_draft and self.creator is None:
            raise FailedPrecondition("this planner does not store previews")
        tenant_id = request.request.tenant_id
        [draft] = await self.planner.drafts(tenant_id, convert.campaign_requests([request.request]))
        if isinstance(draft, DomainError):
            raise draft
        now = self.clock.now()
        saved: pb.Campaign | DomainError | None = None
        if request.save_as_draft and draft.budget_spent is None and self.creator is not None:
            # A stored draft keeps its strategist calls under its own id.
            [saved] = await self.creator.store(tenant_id, [draft], as_draft=True, saved_by=actor)
        if draft.generations and not isinstance(saved, pb.Campaign):
            async with self.engine.begin() as conn:
                await repository.insert_generations(conn, generations=draft.generation_rows(campaign_id=None, now=now))
        if draft.budget_spent is not None:
            raise draft.budget_spent.error()
        if isinstance(saved, DomainError):
            raise saved
        response = convert.preview_to_proto(draft, draft.step_times(now))
        if saved is not None:
            response.campaign.CopyFrom(saved)
        return response
