"""Stored campaigns: read and list them, pause, resume, retry the failed step, cancel, and their timeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner import convert, lifecycle, repository, state, timeline
from dripiq_planner.owners import Owners
from dripiq_planner.state import CampaignStatus


@dataclass
class CampaignService:
    engine: AsyncEngine
    clock: Clock
    # Asked for a timeline's messages and events; None: a timeline has only the planner's part.
    owners: Owners | None = None
    on_commit: Callable[[], None] = field(default=lambda: None)

    # -- read -----------------------------------------------------------------------------

    async def get(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            campaign = await repository.get_campaign(conn, tenant_id=tenant_id, campaign_id=campaign_id)
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            return convert.campaign_to_proto(campaign, await repository.get_steps(conn, campaign_id=campaign.id))

    async def list_campaigns(self, request: pb.ListCampaignsRequest) -> pb.ListCampaignsResponse:
        tenant = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        before = paging.decode_token(request.page_token, datetime, str)
        status = convert.status_filter(request.status)
        async with self.engine.connect() as conn:
            rows = await repository.list_campaigns(
                conn,
                tenant_id=tenant,
                status=status,
                contact_id=request.contact_id,
                lead_id=request.lead_id,
                before=before,
                limit=size + 1,
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].created_at.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListCampaignsResponse(
            campaigns=[convert.campaign_to_proto(row, [], with_strategy=False) for row in page], next_page_token=token
        )

    async def timeline(self, tenant_id: str, campaign_id: str) -> pb.GetCampaignTimelineResponse:
        return await timeline.timeline(self.engine, self.owners, await self.get(tenant_id, campaign_id))

    # -- change ---------------------------------------------------------------------------

    async def _change(
        self, tenant_id: str, campaign_id: str, change: Callable[[state.CampaignState, state.UnitOfWork], None]
    ) -> pb.Campaign:
        """Lock one campaign, let `change` act on it, write it back with what it caused."""
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.begin() as conn:
            campaigns = await state.load(conn, [(tenant_id, campaign_id)])
            campaign = campaigns.get((tenant_id, campaign_id))
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            work = state.UnitOfWork(now=self.clock.now())
            change(campaign, work)
            await state.flush(conn, [campaign], work)
        if work.outbox:
            self.on_commit()
        return await self.get(tenant_id, campaign_id)

    async def pause(self, tenant_id: str, campaign_id: str, resume_after_seconds: int) -> pb.Campaign:
        if resume_after_seconds < 0:
            raise InvalidArgument("resume_after_seconds", "must not be negative")

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            # One still planning is planned all the same and then waits, paused (planning_worker).
            if campaign.status in (CampaignStatus.ACTIVE, CampaignStatus.PLANNING):
                lifecycle.pause(work, campaign, resume_at=lifecycle.resume_after(work.now, resume_after_seconds))
            elif campaign.status != CampaignStatus.PAUSED:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)

    async def resume(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        """A paused campaign goes on; one that needs attention retries its failed step."""

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status == CampaignStatus.PAUSED:
                lifecycle.resume(work, campaign)
            elif campaign.status == CampaignStatus.NEEDS_ATTENTION:
                lifecycle.retry_failed(work, campaign)
            elif campaign.status != CampaignStatus.ACTIVE:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)

    async def retry_step(self, tenant_id: str, campaign_id: str) -> pb.Campaign:
        """The failed step of a campaign that needs attention goes out again (a new message id)."""

        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status != CampaignStatus.NEEDS_ATTENTION:
                raise FailedPrecondition(
                    f"campaign {campaign_id} is {campaign.status}: only a campaign that needs attention has a step to retry"
                )
            lifecycle.retry_failed(work, campaign)

        return await self._change(tenant_id, campaign_id, change)

    async def cancel(self, tenant_id: str, campaign_id: str, reason: str) -> pb.Campaign:
        def change(campaign: state.CampaignState, work: state.UnitOfWork) -> None:
            if campaign.status in state.RUNNING:
                lifecycle.end_campaign(
                    work, campaign, status=CampaignStatus.CANCELED, reason=reason or "canceled by request"
                )
            elif campaign.status != CampaignStatus.CANCELED:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}")

        return await self._change(tenant_id, campaign_id, change)
