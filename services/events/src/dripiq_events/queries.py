"""The EventsService reads: events, replies and rollups of one tenant, answered from the
`events` schema. Nothing here writes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq_common import paging, validation
from dripiq_common.errors import InvalidArgument, NotFound
from dripiq_events import convert, repository


@dataclass
class EventQuery:
    engine: AsyncEngine

    async def step_funnel(self, tenant_id: str, campaign_id: str) -> api_pb.GetStepFunnelResponse:
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            steps = await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)
        return api_pb.GetStepFunnelResponse(
            campaign_id=campaign,
            steps=[
                api_pb.StepCounts(step_index=index, counts=convert.engagement_counts(values))
                for index, values in sorted(steps.items())
            ],
        )

    async def campaign_stats(self, tenant_id: str, campaign_id: str) -> api_pb.GetCampaignStatsResponse:
        tenant = validation.tenant_id(tenant_id)
        campaign = validation.required(campaign_id, "campaign_id")
        async with self.engine.connect() as conn:
            steps = await repository.rollups(conn, tenant_id=tenant, campaign_id=campaign)
        totals: Counter[str] = Counter()
        for values in steps.values():
            totals.update(values)
        return api_pb.GetCampaignStatsResponse(campaign_id=campaign, totals=convert.engagement_counts(totals))

    async def list_message_events(self, request: api_pb.ListMessageEventsRequest) -> api_pb.ListMessageEventsResponse:
        tenant_id = validation.tenant_id(request.tenant_id)
        if request.message_id and request.campaign_id:
            raise InvalidArgument("campaign_id", "give at most one of message_id or campaign_id")
        occurred_after = _bound(request, "occurred_after")
        occurred_before = _bound(request, "occurred_before")
        if not (request.message_id or request.campaign_id):
            # A whole tenant is only listed over a time range: it may hold hundreds of millions.
            for name, bound in (("occurred_after", occurred_after), ("occurred_before", occurred_before)):
                if bound is None:
                    raise InvalidArgument(name, "required when neither message_id nor campaign_id is given")
        if occurred_after is not None and occurred_before is not None and occurred_before <= occurred_after:
            raise InvalidArgument("occurred_before", "must be later than occurred_after")
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, int)
        after_id = after[0] if after else 0
        async with self.engine.connect() as conn:
            rows = await repository.list_events(
                conn,
                tenant_id=tenant_id,
                message_id=request.message_id,
                campaign_id=request.campaign_id,
                occurred_after=occurred_after,
                occurred_before=occurred_before,
                after_id=after_id,
                limit=size + 1,
            )
        page = rows[:size]
        return api_pb.ListMessageEventsResponse(
            events=[convert.message_event(row) for row in page],
            next_page_token=paging.encode_token(page[-1].id) if len(rows) > size else "",
        )

    async def list_inbound_messages(
        self, request: api_pb.ListInboundMessagesRequest
    ) -> api_pb.ListInboundMessagesResponse:
        tenant_id = validation.tenant_id(request.tenant_id)
        size = paging.page_size(request.page_size)
        before = paging.decode_token(request.page_token, int)
        async with self.engine.connect() as conn:
            rows = await repository.list_inbound(
                conn,
                tenant_id=tenant_id,
                campaign_id=request.campaign_id,
                before_id=before[0] if before else None,
                limit=size + 1,
            )
        page = rows[:size]
        return api_pb.ListInboundMessagesResponse(
            messages=[convert.inbound_message(row) for row in page],
            next_page_token=paging.encode_token(page[-1].id) if len(rows) > size else "",
        )

    async def get_inbound(self, tenant_id: str, inbound_id: str) -> api_pb.InboundMessage:
        tenant = validation.tenant_id(tenant_id)
        try:
            wanted = int(validation.required(inbound_id, "inbound_id"))
        except ValueError:
            raise InvalidArgument("inbound_id", f"must be a number, got {inbound_id!r}") from None
        async with self.engine.connect() as conn:
            row = await repository.get_inbound(conn, tenant_id=tenant, inbound_id=wanted)
        if row is None:
            raise NotFound(f"inbound message {inbound_id!r} not found")
        return convert.inbound_message(row)


def _bound(request: api_pb.ListMessageEventsRequest, name: str) -> datetime | None:
    """A time bound of the request, if set; INVALID_ARGUMENT naming it if it cannot be one."""
    if not request.HasField(name):
        return None
    try:
        return getattr(request, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(name, f"not a valid time: {exc}") from None
