"""A campaign's timeline: its steps, the rule decisions taken for it, and, asked of the
services that own them, its messages (dispatcher) and engagement events (events)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dispatcher_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_planner import repository
from dripiq_planner.owners import Owners


async def timeline(engine: AsyncEngine, owners: Owners | None, campaign: pb.Campaign) -> pb.GetCampaignTimelineResponse:
    """The campaign's steps, its rule decisions and, asked of their owners, its messages and
    engagement events, in time order; `unavailable` names an owner that did not answer."""
    tenant_id, campaign_id = campaign.tenant_id, campaign.campaign_id
    async with engine.connect() as conn:
        decisions = await repository.get_decisions(conn, tenant_id=tenant_id, campaign_id=campaign_id)
        changes = await repository.get_changes(conn, tenant_id=tenant_id, campaign_id=campaign_id)
    entries: list[pb.TimelineEntry] = []

    def entry(when: Any, kind: str, step_index: int, message_id: str, detail: str) -> None:
        item = pb.TimelineEntry(kind=kind, step_index=step_index, message_id=message_id, detail=detail)
        if isinstance(when, datetime):
            item.time.FromDatetime(when)
        else:
            item.time.CopyFrom(when)
        entries.append(item)

    for step in campaign.steps:
        if step.HasField("scheduled_at"):
            entry(
                step.scheduled_at,
                "step_scheduled",
                step.step_index,
                step.message_id,
                pb.StepStatus.Name(step.status)
                + (f" (variant {step.variant})" if step.variant else "")
                + (f": {step.placement_note}" if step.placement_note else ""),
            )
    if campaign.status == pb.CAMPAIGN_STATUS_CANCELED:
        # Why it stopped, e.g. a reply to another campaign of the contact (reply_stops).
        entry(campaign.updated_at, "campaign_canceled", campaign.current_step_index, "", campaign.cancel_reason)
    for decision in decisions:
        entry(
            decision.created_at,
            "decision",
            decision.step_index,
            decision.message_id,
            f"{decision.trigger} -> {decision.action}: {decision.result}",
        )
    for change in changes:
        # "by <who>", and for an edit the fields it changed: "by admin-1: content, timing".
        names = ", ".join(sorted(change.fields_json))
        detail = f"by {change.actor}" + (f": {names}" if names else "")
        entry(change.created_at, change.kind, change.step_index or 0, "", detail)
    unavailable = []
    if owners is not None:
        messages, events = await asyncio.gather(
            owners.campaign_messages(tenant_id, campaign_id),
            owners.campaign_events(tenant_id, campaign_id),
            return_exceptions=True,
        )
        if isinstance(messages, BaseException):
            unavailable.append("dispatcher")
        else:
            for message in messages:
                when = message.sent_at if message.HasField("sent_at") else message.created_at
                failed = message.status in (
                    dispatcher_pb.MESSAGE_STATUS_FAILED,
                    dispatcher_pb.MESSAGE_STATUS_SUPPRESSED,
                )
                kind = "message_failed" if failed else "message_sent"
                detail = dispatcher_pb.MessageStatus.Name(message.status)
                entry(when, kind, message.step_index, message.message_id, detail)
        if isinstance(events, BaseException):
            unavailable.append("events")
        else:
            for event in events:
                entry(event.occurred_at, "event", event.step_index, event.message_id, event.event_type)
    entries.sort(key=lambda e: (e.time.seconds, e.time.nanos))
    return pb.GetCampaignTimelineResponse(campaign=campaign, entries=entries, unavailable=unavailable)
