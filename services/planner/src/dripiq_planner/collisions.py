"""Collision control: a reply that ends its campaign ends the contact's other campaigns, or
every campaign at the contact's company, when the tenant's `reply_stops` says so.

It runs in the reply's own transaction, after the rules: the campaigns in scope are locked
and ended there, so a person who answered one campaign gets no further mail from the others
once the reply is acknowledged. A redelivered reply finds them ended and changes nothing.

Two replies at one company at once would lock their own campaign first and then each
other's: a deadlock. So the campaigns in scope are found before anything is locked
(`scope_of_replies`) and locked with the batch's own in one statement, in id order, as every
batch locks; the scope is looked up again under the locks, and only a campaign that started
in between is locked after the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

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


async def scope_of_replies(conn: AsyncConnection, replied: Collection[CampaignKey]) -> set[CampaignKey]:
    """The running campaigns a reply to any of `replied` may end under its tenant's
    reply_stops, read without locking anything, for the caller to lock with its own."""
    if not replied:
        return set()
    campaigns = [c for c in (await state.load(conn, sorted(set(replied)), lock=False)).values() if c.status in RUNNING]
    if not campaigns:
        return set()
    tenants = await repository.tenant_defaults(conn, tenant_ids={c.tenant_id for c in campaigns})
    scopes: set[tuple[str, str | None, str | None]] = set()
    for campaign in campaigns:
        stops = tenants[campaign.tenant_id].reply_stops
        if stops == ReplyStops.CONTACT:
            scopes.add((campaign.tenant_id, campaign.contact_id, None))
        elif stops == ReplyStops.COMPANY:
            scopes.add((campaign.tenant_id, None, campaign.lead_id))
    keys: set[CampaignKey] = set()
    for tenant_id, contact_id, lead_id in sorted(scopes, key=str):
        keys |= await repository.running_in_scope(conn, tenant_id=tenant_id, contact_id=contact_id, lead_id=lead_id)
    return keys


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
