"""gRPC clients for what the planner asks of other services (rule 1: their data, their API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import structlog
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq_common.errors import InvalidArgument, Unavailable
from dripiq_common.tls import FixedChannel, ReloadingChannel

ChannelSource = FixedChannel | ReloadingChannel

log = structlog.get_logger(__name__)

MAX_TIMELINE_PAGES = 20
# A batch names one sender identity or a few; past this many, the rest go without their domain.
MAX_IDENTITY_LOOKUPS = 10


@dataclass
class Owners:
    dispatcher_address: str
    events_address: str
    timeout_seconds: float = 5.0
    # Opens a channel to an address: mutual TLS to the service's internal port, its certificate
    # read again after a rotation (dripiq_common.grpc_security.service_channel).
    channel: Callable[[str], ChannelSource] = lambda address: FixedChannel(grpc.aio.insecure_channel(address))
    _dispatcher: ChannelSource = field(init=False)
    _events: ChannelSource = field(init=False)

    def __post_init__(self) -> None:
        self._dispatcher = self.channel(self.dispatcher_address)
        self._events = self.channel(self.events_address)

    # Stubs on the current channel: after a certificate rotation, the new one.
    @property
    def suppressions(self) -> dpb_grpc.SuppressionServiceStub:
        return dpb_grpc.SuppressionServiceStub(self._dispatcher.get())

    @property
    def messages(self) -> dpb_grpc.DispatcherServiceStub:
        return dpb_grpc.DispatcherServiceStub(self._dispatcher.get())

    @property
    def events(self) -> epb_grpc.EventsServiceStub:
        return epb_grpc.EventsServiceStub(self._events.get())

    async def close(self) -> None:
        await self._dispatcher.close()
        await self._events.close()

    async def suppressed(self, tenant_id: str, addresses: list[str]) -> dict[str, str] | None:
        """Address -> reason for the suppressed ones; None when the dispatcher did not answer.

        The dispatcher checks again at send time, so planning goes on without the answer.
        """
        if not addresses:
            return {}
        try:
            answer = await self.suppressions.CheckSuppressions(
                dpb.CheckSuppressionsRequest(tenant_id=tenant_id, addresses=addresses), timeout=self.timeout_seconds
            )
        except grpc.aio.AioRpcError as exc:
            log.warning("planner.suppression_check_unavailable", tenant_id=tenant_id, code=exc.code().name)
            return None
        return {s.address.lower(): s.reason for s in answer.suppressed}

    @property
    def identities(self) -> dpb_grpc.SenderIdentityServiceStub:
        return dpb_grpc.SenderIdentityServiceStub(self._dispatcher.get())

    async def sender_identities(self, tenant_id: str, identity_ids: list[str]) -> dict[str, dpb.SenderIdentity | None]:
        """Each sender identity the dispatcher answered for: its identity, or None when it has
        none by that id in the tenant. One it did not answer for (down, slow, past the first
        MAX_IDENTITY_LOOKUPS of a batch) is left out: the dispatcher checks again at send time."""

        async def one(identity_id: str) -> tuple[str, dpb.SenderIdentity | None] | None:
            try:
                answer = await self.identities.GetSenderIdentity(
                    dpb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=identity_id),
                    timeout=self.timeout_seconds,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return identity_id, None
                log.warning("planner.sender_identity_unavailable", tenant_id=tenant_id, code=exc.code().name)
                return None
            return identity_id, answer.sender_identity

        found = await asyncio.gather(*(one(i) for i in identity_ids[:MAX_IDENTITY_LOOKUPS]))
        return dict(pair for pair in found if pair is not None)

    async def campaign_messages(self, tenant_id: str, campaign_id: str) -> list[dpb.Message]:
        out: list[dpb.Message] = []
        token = ""
        for _ in range(MAX_TIMELINE_PAGES):
            page = await self.messages.ListMessages(
                dpb.ListMessagesRequest(tenant_id=tenant_id, campaign_id=campaign_id, page_size=1000, page_token=token),
                timeout=self.timeout_seconds,
            )
            out += page.messages
            token = page.next_page_token
            if not token:
                break
        return out

    async def campaign_events(self, tenant_id: str, campaign_id: str) -> list[epb.MessageEvent]:
        out: list[epb.MessageEvent] = []
        token = ""
        for _ in range(MAX_TIMELINE_PAGES):
            page = await self.events.ListMessageEvents(
                epb.ListMessageEventsRequest(
                    tenant_id=tenant_id, campaign_id=campaign_id, page_size=1000, page_token=token
                ),
                timeout=self.timeout_seconds,
            )
            out += page.events
            token = page.next_page_token
            if not token:
                break
        return out

    async def tenant_engagement(self, request: epb.GetTenantStatsRequest) -> epb.GetTenantStatsResponse:
        """The events service's engagement rows for a tenant's GetTenantStats.

        Its INVALID_ARGUMENT is the caller's to fix and keeps the field it names (the planner's
        request names its engagement fields as the events request does). Any other failure is
        Unavailable: an answer asked for engagement never goes out without it.
        """
        try:
            return await self.events.GetTenantStats(request, timeout=self.timeout_seconds)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                field, description = _field_violation(exc)
                raise InvalidArgument(field, description) from exc
            log.warning("planner.tenant_engagement_unavailable", tenant_id=request.tenant_id, code=exc.code().name)
            raise Unavailable(
                f"engagement analytics: the events service did not answer ({exc.code().name}); try again"
            ) from exc


def _field_violation(exc: grpc.aio.AioRpcError) -> tuple[str, str]:
    """The field and description of an INVALID_ARGUMENT's first BadRequest violation; `request`
    and the status message when it carries none."""
    status = rpc_status.from_call(exc)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            if bad_request.field_violations:
                violation = bad_request.field_violations[0]
                return violation.field, violation.description
    return "request", exc.details() or "is not valid"
