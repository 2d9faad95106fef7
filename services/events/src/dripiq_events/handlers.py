"""gRPC EventsService: proto in, EventQuery, proto out."""

from __future__ import annotations

from dripiq.events.v1 import events_service_pb2 as pb
from dripiq.events.v1 import events_service_pb2_grpc as pb_grpc
from dripiq_events.queries import EventQuery


class EventsServicer(pb_grpc.EventsServiceServicer):
    def __init__(self, query: EventQuery) -> None:
        self.query = query

    async def ListMessageEvents(self, request: pb.ListMessageEventsRequest, context) -> pb.ListMessageEventsResponse:
        return await self.query.list_message_events(request)

    async def GetCampaignStats(self, request: pb.GetCampaignStatsRequest, context) -> pb.GetCampaignStatsResponse:
        return await self.query.campaign_stats(request.tenant_id, request.campaign_id)

    async def GetStepFunnel(self, request: pb.GetStepFunnelRequest, context) -> pb.GetStepFunnelResponse:
        return await self.query.step_funnel(request.tenant_id, request.campaign_id)

    async def ListInboundMessages(
        self, request: pb.ListInboundMessagesRequest, context
    ) -> pb.ListInboundMessagesResponse:
        return await self.query.list_inbound_messages(request)

    async def GetInboundMessage(self, request: pb.GetInboundMessageRequest, context) -> pb.GetInboundMessageResponse:
        return pb.GetInboundMessageResponse(message=await self.query.get_inbound(request.tenant_id, request.inbound_id))
