"""gRPC DispatcherService, SenderIdentityService and SuppressionService: proto in, service,
proto out."""

from __future__ import annotations

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq_common.authz import ADMIN, Access, access_rules
from dripiq_common.grpc_server import Registrar
from dripiq_dispatcher.forwarding import ReplyForwardingSettings
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks


class DispatcherServicer(pb_grpc.DispatcherServiceServicer):
    def __init__(
        self, messages: Messages, rate_limits: RateLimits, tasks: Tasks, forwarding: ReplyForwardingSettings
    ) -> None:
        self.messages = messages
        self.rate_limits = rate_limits
        self.tasks = tasks
        self.forwarding = forwarding

    async def GetMessage(self, request: pb.GetMessageRequest, context) -> pb.GetMessageResponse:
        message = await self.messages.get_message(request.tenant_id, request.message_id)
        return pb.GetMessageResponse(message=message)

    async def ListMessages(self, request: pb.ListMessagesRequest, context) -> pb.ListMessagesResponse:
        return await self.messages.list_messages(request)

    async def SetRateLimit(self, request: pb.SetRateLimitRequest, context) -> pb.SetRateLimitResponse:
        return pb.SetRateLimitResponse(rate_limit=await self.rate_limits.set_rate_limit(request.rate_limit))

    async def GetRateLimit(self, request: pb.GetRateLimitRequest, context) -> pb.GetRateLimitResponse:
        limit = await self.rate_limits.get_rate_limit(request.tenant_id, request.channel)
        return pb.GetRateLimitResponse(rate_limit=limit)

    async def CompleteTask(self, request: pb.CompleteTaskRequest, context) -> pb.CompleteTaskResponse:
        return pb.CompleteTaskResponse(message=await self.tasks.complete_task(request))

    async def SetReplyForwarding(self, request: pb.SetReplyForwardingRequest, context) -> pb.SetReplyForwardingResponse:
        return pb.SetReplyForwardingResponse(reply_forwarding=await self.forwarding.set(request.reply_forwarding))

    async def GetReplyForwarding(self, request: pb.GetReplyForwardingRequest, context) -> pb.GetReplyForwardingResponse:
        return pb.GetReplyForwardingResponse(reply_forwarding=await self.forwarding.get(request.tenant_id))


class SenderIdentityServicer(pb_grpc.SenderIdentityServiceServicer):
    def __init__(self, identities: SenderIdentities) -> None:
        self.identities = identities

    async def CreateSenderIdentity(
        self, request: pb.CreateSenderIdentityRequest, context
    ) -> pb.CreateSenderIdentityResponse:
        return pb.CreateSenderIdentityResponse(sender_identity=await self.identities.create(request))

    async def GetSenderIdentity(self, request: pb.GetSenderIdentityRequest, context) -> pb.GetSenderIdentityResponse:
        identity = await self.identities.get(request.tenant_id, request.sender_identity_id)
        return pb.GetSenderIdentityResponse(sender_identity=identity)

    async def VerifySenderIdentity(
        self, request: pb.VerifySenderIdentityRequest, context
    ) -> pb.VerifySenderIdentityResponse:
        identity = await self.identities.verify(request.tenant_id, request.sender_identity_id)
        return pb.VerifySenderIdentityResponse(sender_identity=identity)

    async def ListSenderIdentities(
        self, request: pb.ListSenderIdentitiesRequest, context
    ) -> pb.ListSenderIdentitiesResponse:
        return await self.identities.list_sender_identities(request)

    async def UpdateSenderIdentity(
        self, request: pb.UpdateSenderIdentityRequest, context
    ) -> pb.UpdateSenderIdentityResponse:
        return pb.UpdateSenderIdentityResponse(sender_identity=await self.identities.update(request))

    async def DeleteSenderIdentity(
        self, request: pb.DeleteSenderIdentityRequest, context
    ) -> pb.DeleteSenderIdentityResponse:
        await self.identities.delete(request.tenant_id, request.sender_identity_id)
        return pb.DeleteSenderIdentityResponse()


class SuppressionServicer(pb_grpc.SuppressionServiceServicer):
    def __init__(self, suppressions: Suppressions) -> None:
        self.suppressions = suppressions

    async def AddSuppression(self, request: pb.AddSuppressionRequest, context) -> pb.AddSuppressionResponse:
        suppression = await self.suppressions.add(request.tenant_id, request.address, request.reason)
        return pb.AddSuppressionResponse(suppression=suppression)

    async def CheckSuppressions(self, request: pb.CheckSuppressionsRequest, context) -> pb.CheckSuppressionsResponse:
        suppressed = await self.suppressions.check(request.tenant_id, list(request.addresses))
        return pb.CheckSuppressionsResponse(suppressed=suppressed)

    async def RemoveSuppression(self, request: pb.RemoveSuppressionRequest, context) -> pb.RemoveSuppressionResponse:
        removed = await self.suppressions.remove(request.tenant_id, request.address, request.reason)
        return pb.RemoveSuppressionResponse(removed_count=removed)

    async def ListSuppressions(self, request: pb.ListSuppressionsRequest, context) -> pb.ListSuppressionsResponse:
        return await self.suppressions.list_suppressions(request)

    async def ImportSuppressions(self, request: pb.ImportSuppressionsRequest, context) -> pb.ImportSuppressionsResponse:
        return await self.suppressions.import_many(request)


# Methods that change how a tenant's mail goes out, or take back a contact's unsubscribe: its
# administrators (or an operator) only. Every other method is for anyone acting for the tenant.
ACCESS: dict[str, Access] = {
    **access_rules(
        pb.DESCRIPTOR.services_by_name["SenderIdentityService"],
        ADMIN,
        ["CreateSenderIdentity", "VerifySenderIdentity", "UpdateSenderIdentity", "DeleteSenderIdentity"],
    ),
    **access_rules(pb.DESCRIPTOR.services_by_name["DispatcherService"], ADMIN, ["SetRateLimit", "SetReplyForwarding"]),
    **access_rules(
        pb.DESCRIPTOR.services_by_name["SuppressionService"], ADMIN, ["RemoveSuppression", "ImportSuppressions"]
    ),
}

SERVICE_NAMES = [
    pb.DESCRIPTOR.services_by_name[name].full_name
    for name in ("DispatcherService", "SenderIdentityService", "SuppressionService")
]


def registrars(
    *,
    messages: Messages,
    rate_limits: RateLimits,
    tasks: Tasks,
    identities: SenderIdentities,
    suppressions: Suppressions,
    forwarding: ReplyForwardingSettings,
) -> list[Registrar]:
    messages_api = DispatcherServicer(messages, rate_limits, tasks, forwarding)
    identities_api = SenderIdentityServicer(identities)
    suppressions_api = SuppressionServicer(suppressions)
    return [
        lambda server: pb_grpc.add_DispatcherServiceServicer_to_server(messages_api, server),
        lambda server: pb_grpc.add_SenderIdentityServiceServicer_to_server(identities_api, server),
        lambda server: pb_grpc.add_SuppressionServiceServicer_to_server(suppressions_api, server),
    ]
