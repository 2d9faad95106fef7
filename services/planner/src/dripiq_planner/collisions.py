"""Collision control: a reply that ends its campaign ends the contact's other campaigns, or
every campaign at the contact's company, when the tenant's `reply_stops` says so.

It runs in the reply's own transaction, after the rules: the campaigns in scope are locked
and ended there, so a person who answered one campaign gets no further mail from the others
once the reply is acknowledged. A redelivered reply finds them ended and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq_planner import lifecycle, repository, state
from dripiq_planner.state import RUNNING, CampaignKey, CampaignState, CampaignStatus, UnitOfWork
from dripiq_planner.tenants import ReplyStops

log = structlog.get_logger(__name__)


def reason(replied: CampaignState, stops: ReplyStops) -> str:
    """The cancel reason of a campaign a reply elsewhere ended; names the reply's campaign."""
    return f"reply to campaign {replied.id} (reply_stops={stops.value})"


def in_scope(replied: CampaignState, other: CampaignState, stops: ReplyStops) -> bool:
    if other.tenant_id != replied.tenant_id or other.id == replied.id:
        return False
    if stops == ReplyStops.CONTACT:
        return bool(other.contact_id == replied.contact_id)
    if stops == ReplyStops.COMPANY:
        return bool(other.lead_id == replied.lead_id)
    return False


async def stop_others(
    conn: AsyncConnection, work: UnitOfWork, loaded: Mapping[CampaignKey, CampaignState]
) -> list[CampaignState]:
    """End the running campaigns in scope of each reply that ended its campaign; the campaigns
    it had to load (and lock) for that, which the caller writes back with the rest."""
    if not work.ended_by_reply:
        return []
    tenants = await repository.tenant_defaults(conn, tenant_ids={c.tenant_id for c in work.ended_by_reply})
    replied = [(c, tenants[c.tenant_id].reply_stops) for c in work.ended_by_reply]
    replied = [(c, stops) for c, stops in replied if stops != ReplyStops.CAMPAIGN]
    if not replied:
        return []
    keys: set[CampaignKey] = set()
    for campaign, stops in replied:
        keys |= await repository.running_in_scope(
            conn,
            tenant_id=campaign.tenant_id,
            contact_id=campaign.contact_id if stops == ReplyStops.CONTACT else None,
            lead_id=campaign.lead_id if stops == ReplyStops.COMPANY else None,
        )
    extra = await state.load(conn, sorted(keys - set(loaded)))
    everyone = {**loaded, **extra}
    for campaign, stops in replied:
        for other in everyone.values():
            if other.status in RUNNING and in_scope(campaign, other, stops):
                lifecycle.end_campaign(work, other, status=CampaignStatus.CANCELED, reason=reason(campaign, stops))
                log.info(
                    "collision.stopped",
                    tenant_id=other.tenant_id,
                    campaign_id=other.id,
                    replied_campaign_id=campaign.id,
                    reply_stops=stops.value,
                )
    return list(extra.values())
