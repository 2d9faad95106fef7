"""Approving drafts: one campaign, or a tenant's drafts by filter in bounded pages. An approved
draft starts as a created campaign does, and the approval is kept with who gave it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner import lifecycle, repository, state
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.state import CampaignState, CampaignStatus, UnitOfWork

log = structlog.get_logger(__name__)

DEFAULT_PER_CALL = 1_000
MAX_PER_CALL = 10_000
# Campaigns locked and started in one transaction: short enough that creates and timers for
# the same campaigns never wait long.
PAGE = 200


def change_row(campaign: CampaignState, *, kind: str, actor: str, now: Any, **values: Any) -> dict[str, Any]:
    """One row of planner.campaign_changes: who changed the campaign by hand, and how."""
    return campaign_change(campaign.tenant_id, campaign.id, kind=kind, actor=actor, now=now, **values)


def campaign_change(
    tenant_id: str, campaign_id: str, *, kind: str, actor: str, now: Any, **values: Any
) -> dict[str, Any]:
    """A campaign_changes row for a campaign known by its ids (one being stored, say)."""
    return {
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "kind": kind,
        "actor": actor,
        "created_at": now,
        "step_index": values.get("step_index"),
        "fields_json": values.get("fields", {}),
    }


def approve(work: UnitOfWork, campaign: CampaignState, *, actor: str) -> dict[str, Any]:
    lifecycle.start(work, campaign)
    return change_row(campaign, kind="approved", actor=actor, now=work.now)


@dataclass
class CampaignApproval:
    engine: AsyncEngine
    clock: Clock
    campaigns: CampaignService
    on_commit: Callable[[], None] = field(default=lambda: None)

    async def approve(self, tenant_id: str, campaign_id: str, *, actor: str) -> pb.Campaign:
        """Start a draft; an active campaign is left as it is (approving twice is one approval)."""
        validation.tenant_id(tenant_id)
        validation.required(campaign_id, "campaign_id")
        async with self.engine.begin() as conn:
            campaign = (await state.load(conn, [(tenant_id, campaign_id)])).get((tenant_id, campaign_id))
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            if campaign.status == CampaignStatus.DRAFT:
                await self._approve(conn, [campaign], actor)
            elif campaign.status != CampaignStatus.ACTIVE:
                raise FailedPrecondition(f"campaign {campaign_id} is {campaign.status}: only a draft can be approved")
        self.on_commit()
        return await self.campaigns.get(tenant_id, campaign_id)

    async def batch_approve(
        self, request: pb.BatchApproveCampaignsRequest, *, actor: str
    ) -> pb.BatchApproveCampaignsResponse:
        """The tenant's drafts matching the filter, oldest first, a page per transaction, up to
        max_campaigns; `more` when matching drafts remain. Drafts created during the call are
        not chased: with no created_before, the call's start bounds it."""
        tenant = validation.tenant_id(request.tenant_id)
        for name in ("product_id", "sender_identity_id"):
            if len(getattr(request, name)) > 128:
                raise InvalidArgument(name, "must be at most 128 characters")
        if request.max_campaigns < 0:
            raise InvalidArgument("max_campaigns", "must not be negative (0: 1,000)")
        budget = min(request.max_campaigns or DEFAULT_PER_CALL, MAX_PER_CALL)
        before = (
            request.created_before.ToDatetime(tzinfo=UTC) if request.HasField("created_before") else self.clock.now()
        )

        async def page(limit: int) -> tuple[int, int]:
            """(drafts found, drafts approved) of one page, in one transaction."""
            async with self.engine.begin() as conn:
                ids = await repository.draft_ids(
                    conn,
                    tenant_id=tenant,
                    product_id=request.product_id,
                    sender_identity_id=request.sender_identity_id,
                    created_before=before,
                    limit=limit,
                )
                loaded = await state.load(conn, [(tenant, i) for i in ids])
                # Locked now: one approved meanwhile by another call is not approved twice.
                drafts = [c for c in loaded.values() if c.status == CampaignStatus.DRAFT]
                await self._approve(conn, drafts, actor)
            self.on_commit()
            return len(ids), len(drafts)

        approved = 0
        # A page leaves no draft it found behind (it approves it, or another call did), so the
        # pages a budget needs are bounded; one approved elsewhere meanwhile costs a page.
        for _ in range(budget // PAGE + 1):
            limit = min(PAGE, budget - approved)
            if limit <= 0:
                break
            found, done = await page(limit)
            approved += done
            if found < limit:
                break
        more = await self._any_left(tenant, request.product_id, request.sender_identity_id, before)
        log.info("campaigns.approved", tenant_id=tenant, count=approved, more=more)
        return pb.BatchApproveCampaignsResponse(approved_count=approved, more=more)

    async def _any_left(self, tenant: str, product_id: str, sender_identity_id: str, before: Any) -> bool:
        async with self.engine.connect() as conn:
            return bool(
                await repository.draft_ids(
                    conn,
                    tenant_id=tenant,
                    product_id=product_id,
                    sender_identity_id=sender_identity_id,
                    created_before=before,
                    limit=1,
                )
            )

    async def _approve(self, conn: AsyncConnection, drafts: list[CampaignState], actor: str) -> None:
        if not drafts:
            return
        work = UnitOfWork(now=self.clock.now())
        changes = [approve(work, campaign, actor=actor) for campaign in drafts]
        await state.flush(conn, drafts, work)
        await repository.insert_changes(conn, changes=changes)
