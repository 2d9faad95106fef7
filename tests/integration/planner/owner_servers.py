"""The dispatcher's and the events service's real servicers, served in process on 127.0.0.1, for
the planner's calls to its owners (suppression checks, the timeline)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from secured import server_security
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.authz import Access
from dripiq_common.clock import ManualClock
from dripiq_common.grpc_server import GrpcServer, Registrar
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.forwarding import ReplyForwardingSettings
from dripiq_dispatcher.handlers import ACCESS as DISPATCHER_ACCESS
from dripiq_dispatcher.handlers import DispatcherServicer, SenderIdentityServicer, SuppressionServicer
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sender_auth import SendGridSenderChecks
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks
from dripiq_events.handlers import EventsServicer
from dripiq_events.queries import EventQuery
from dripiq_planner.handlers import ACCESS as PLANNER_ACCESS
from dripiq_planner.handlers import CampaignServicer


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Served:
    # Callers outside the suite (a token); the suite's services (their certificate).
    public: str
    internal: str


@asynccontextmanager
async def serve(
    names: Sequence[str],
    register: Sequence[Registrar],
    *,
    access: Mapping[str, Access] | None = None,
    serves_as: str = "dispatcher",
) -> AsyncIterator[Served]:
    """The servicers on a secured in-process server (tests/secured.py)."""
    server = GrpcServer(
        address="127.0.0.1:0",
        service_names=list(names),
        register=list(register),
        security=server_security({**DISPATCHER_ACCESS, **(access or {})}, serves_as=serves_as),
    )
    await server.start()
    await server.serving()
    try:
        yield Served(f"127.0.0.1:{server.port}", f"127.0.0.1:{server.internal_port}")
    finally:
        await server.stop(0)


@asynccontextmanager
async def events_server(engine: AsyncEngine) -> AsyncIterator[str]:
    """The events service's real servicer; yields its internal (mutual TLS) address."""
    servicer = EventsServicer(EventQuery(engine))
    async with serve(
        ["dripiq.events.v1.EventsService"],
        [lambda s: epb_grpc.add_EventsServiceServicer_to_server(servicer, s)],
        serves_as="events",
    ) as served:
        yield served.internal


@asynccontextmanager
async def planner_server(servicer: CampaignServicer) -> AsyncIterator[Served]:
    """The planner's CampaignService on a secured in-process server, with its access rules."""
    async with serve(
        ["dripiq.planner.v1.CampaignService"],
        [lambda s: pb_grpc.add_CampaignServiceServicer_to_server(servicer, s)],
        access=PLANNER_ACCESS,
        serves_as="planner",
    ) as served:
        yield served


def owner_services(
    engine: AsyncEngine, clock: ManualClock, *, events: bool = True, sendgrid_url: str = ""
) -> tuple[list, list]:
    """The real dispatcher (messages, suppressions; with `sendgrid_url`, sender identities
    verified against the SendGrid there, key SG.test) and events query servicers."""
    messages_api = DispatcherServicer(
        Messages(engine), RateLimits(engine, clock), Tasks(engine, clock), ReplyForwardingSettings(engine, clock)
    )
    suppressions_api = SuppressionServicer(Suppressions(engine, clock))
    names = ["dripiq.dispatcher.v1.DispatcherService", "dripiq.dispatcher.v1.SuppressionService"]
    register: list[Registrar] = [
        lambda s: dpb_grpc.add_DispatcherServiceServicer_to_server(messages_api, s),
        lambda s: dpb_grpc.add_SuppressionServiceServicer_to_server(suppressions_api, s),
    ]
    if sendgrid_url:
        checks = SendGridSenderChecks(sendgrid_url, "SG.test")
        identities_api = SenderIdentityServicer(SenderIdentities(engine, clock, checks, ProviderAccounts()))
        names.append("dripiq.dispatcher.v1.SenderIdentityService")
        register.append(lambda s: dpb_grpc.add_SenderIdentityServiceServicer_to_server(identities_api, s))
    if events:
        events_api = EventsServicer(EventQuery(engine))
        names.append("dripiq.events.v1.EventsService")
        register.append(lambda s: epb_grpc.add_EventsServiceServicer_to_server(events_api, s))
    return names, register
