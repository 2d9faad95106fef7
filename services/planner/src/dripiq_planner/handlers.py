"""gRPC CampaignService: proto in, CampaignService, proto out."""

from __future__ import annotations

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_planner.campaigns import CampaignService


class CampaignServicer(pb_grpc.CampaignServiceServicer):
    def __init__(self, campaigns: CampaignService) -> None:
        self.campaigns = campaigns

    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context) -> pb.CreateCampaignResponse:  # type: ignore[no-untyped-def]
        return pb.CreateCampaignResponse(campaign=await self.campaigns.create(request))

    async def GetCampaign(self, request: pb.GetCampaignRequest, context) -> pb.GetCampaignResponse:  # type: ignore[no-untyped-def]
        return pb.GetCampaignResponse(campaign=await self.campaigns.get(request.tenant_id, request.campaign_id))

    async def CancelCampaign(self, request: pb.CancelCampaignRequest, context) -> pb.CancelCampaignResponse:  # type: ignore[no-untyped-def]
        campaign = await self.campaigns.cancel(request.tenant_id, request.campaign_id, request.reason)
        return pb.CancelCampaignResponse(campaign=campaign)
