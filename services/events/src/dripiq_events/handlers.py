"""gRPC EventsService: proto in, one EventQuery read, proto out (through convert.py)."""

from __future__ import annotations

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq_events import convert
from dripiq_events.queries import EventQuery, EventScope, TenantStatsQuery


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(self, query: EventQuery) -> None:
        self.query = query

    async def ListMessageEvents(self, request: pb.ListMessageEventsRequest, context) -> pb.ListMessageEventsResponse:
        # The scope is checked before the time bounds are read: a request with faults in both
        # is told of its scope's.
        scope = EventScope.of(request.tenant_id, message_id=request.message_id, campaign_id=request.campaign_id)
        page = await self.query.list_message_events(
            scope,
            occurred_after=convert.time_bound(request, "occurred_after"),
            occurred_before=convert.time_bound(request, "occurred_before"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert.message_events_response(page)

    async def GetCampaignStats(self, request: pb.GetCampaignStatsRequest, context) -> pb.GetCampaignStatsResponse:
        totals = await self.query.campaign_stats(request.tenant_id, request.campaign_id)
        return convert.campaign_stats_response(request.campaign_id, totals)

    async def GetStepFunnel(self, request: pb.GetStepFunnelRequest, context) -> pb.GetStepFunnelResponse:
        steps = await self.query.step_funnel(request.tenant_id, request.campaign_id)
        variants = await self.query.step_variants(request.tenant_id, request.campaign_id)
        return convert.step_funnel_response(request.campaign_id, steps, variants)

    async def ListInboundMessages(
        self, request: pb.ListInboundMessagesRequest, context
    ) -> pb.ListInboundMessagesResponse:
        page = await self.query.list_inbound_messages(
            request.tenant_id,
            campaign_id=request.campaign_id,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert.inbound_messages_response(page)

    async def GetInboundMessage(self, request: pb.GetInboundMessageRequest, context) -> pb.GetInboundMessageResponse:
        row = await self.query.get_inbound(request.tenant_id, request.inbound_id)
        return pb.GetInboundMessageResponse(message=convert.inbound_message(row))

    async def GetTenantStats(self, request: pb.GetTenantStatsRequest, context) -> pb.GetTenantStatsResponse:
        query = TenantStatsQuery.of(
            request.tenant_id,
            start_day=request.start_day,
            end_day=request.end_day,
            group_by=convert.stats_group_by(request),
            filters=convert.stats_filters(request),
        )
        page = await self.query.tenant_stats(query, page_size=request.page_size, page_token=request.page_token)
        return convert.tenant_stats_response(page)
