"""gRPC CampaignService: each method hands its request to the use case that answers it."""

from __future__ import annotations

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.authz import ADMIN, access_rules, caller
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.tenant_settings import TenantSettingsService

# Who acted, on a server that authenticates nobody (local runs without credentials).
ANONYMOUS = "anonymous"


def actor() -> str:
    """The subject of the principal making the call being handled."""
    principal = caller()
    return principal.subject if principal is not None else ANONYMOUS


class CampaignServicer(pb_grpc.CampaignServiceServicer):
    def __init__(
        self,
        *,
        creator: CampaignCreator,
        campaigns: CampaignService,
        preview: StrategyPreview,
        tenant_settings: TenantSettingsService,
        approval: CampaignApproval,
        step_editor: StepEditor,
        stats: TenantStats,
    ) -> None:
        self.creator = creator
        self.campaigns = campaigns
        self.preview = preview
        self.tenant_settings = tenant_settings
        self.approval = approval
        self.step_editor = step_editor
        self.stats = stats

    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context) -> pb.CreateCampaignResponse:
        return pb.CreateCampaignResponse(campaign=await self.creator.create(request))

    async def BatchCreateCampaigns(
        self, request: pb.BatchCreateCampaignsRequest, context
    ) -> pb.BatchCreateCampaignsResponse:
        return await self.creator.batch_create(request)

    async def GetCampaign(self, request: pb.GetCampaignRequest, context) -> pb.GetCampaignResponse:
        return pb.GetCampaignResponse(campaign=await self.campaigns.get(request.tenant_id, request.campaign_id))

    async def ListCampaigns(self, request: pb.ListCampaignsRequest, context) -> pb.ListCampaignsResponse:
        return await self.campaigns.list_campaigns(request)

    async def PauseCampaign(self, request: pb.PauseCampaignRequest, context) -> pb.PauseCampaignResponse:
        campaign = await self.campaigns.pause(request.tenant_id, request.campaign_id, request.resume_after_seconds)
        return pb.PauseCampaignResponse(campaign=campaign)

    async def ResumeCampaign(self, request: pb.ResumeCampaignRequest, context) -> pb.ResumeCampaignResponse:
        return pb.ResumeCampaignResponse(campaign=await self.campaigns.resume(request.tenant_id, request.campaign_id))

    async def RetryStep(self, request: pb.RetryStepRequest, context) -> pb.RetryStepResponse:
        return pb.RetryStepResponse(campaign=await self.campaigns.retry_step(request.tenant_id, request.campaign_id))

    async def CancelCampaign(self, request: pb.CancelCampaignRequest, context) -> pb.CancelCampaignResponse:
        campaign = await self.campaigns.cancel(request.tenant_id, request.campaign_id, request.reason)
        return pb.CancelCampaignResponse(campaign=campaign)

    async def PreviewStrategy(self, request: pb.PreviewStrategyRequest, context) -> pb.PreviewStrategyResponse:
        return await self.preview.preview(request, actor=actor())

    async def GetCampaignTimeline(
        self, request: pb.GetCampaignTimelineRequest, context
    ) -> pb.GetCampaignTimelineResponse:
        return await self.campaigns.timeline(request.tenant_id, request.campaign_id)

    async def GetTenantSettings(self, request: pb.GetTenantSettingsRequest, context) -> pb.GetTenantSettingsResponse:
        return pb.GetTenantSettingsResponse(settings=await self.tenant_settings.get(request.tenant_id))

    async def UpdateTenantSettings(
        self, request: pb.UpdateTenantSettingsRequest, context
    ) -> pb.UpdateTenantSettingsResponse:
        return pb.UpdateTenantSettingsResponse(settings=await self.tenant_settings.update(request))

    async def GetTenantStats(self, request: pb.GetTenantStatsRequest, context) -> pb.GetTenantStatsResponse:
        return await self.stats.answer(request)

    async def ApproveCampaign(self, request: pb.ApproveCampaignRequest, context) -> pb.ApproveCampaignResponse:
        campaign = await self.approval.approve(request.tenant_id, request.campaign_id, actor=actor())
        return pb.ApproveCampaignResponse(campaign=campaign)

    async def BatchApproveCampaigns(
        self, request: pb.BatchApproveCampaignsRequest, context
    ) -> pb.BatchApproveCampaignsResponse:
        return await self.approval.batch_approve(request, actor=actor())

    async def UpdateCampaignStep(self, request: pb.UpdateCampaignStepRequest, context) -> pb.UpdateCampaignStepResponse:
        return pb.UpdateCampaignStepResponse(campaign=await self.step_editor.update(request, actor=actor()))


# A tenant's settings (its postal address, tracking, defaults) are its administrators' to change;
# what goes out under its name once it requires approval, too: approving drafts and changing a
# step's copy after approval are the same sign-off.
ACCESS = access_rules(
    pb.DESCRIPTOR.services_by_name["CampaignService"],
    ADMIN,
    ["UpdateTenantSettings", "ApproveCampaign", "BatchApproveCampaigns", "UpdateCampaignStep"],
)
