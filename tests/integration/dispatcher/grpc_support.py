"""The dispatcher's gRPC services served in-process on 127.0.0.1, secured as in production, for
the API tests (callers are operators)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from dispatch_support import sender_identities
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from secured import caller_channel, server_security
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.grpc_server import GrpcServer
from dripiq_dispatcher.forwarding import ReplyForwardingSettings
from dripiq_dispatcher.handlers import ACCESS, SERVICE_NAMES, registrars
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks


@asynccontextmanager
async def dispatcher_api(
    engine: AsyncEngine, dispatcher: Sends, clock: Clock, *, identities: SenderIdentities | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """The API beside `dispatcher`: its tasks wake the same outbox relay. `identities` verify
    at a SendGrid of the test's (by default none: verifying answers UNAVAILABLE)."""
    server = GrpcServer(
        address="127.0.0.1:0",
        service_names=SERVICE_NAMES,
        register=registrars(
            messages=Messages(engine),
            rate_limits=RateLimits(engine, clock),
            tasks=Tasks(engine, clock, on_outbox=dispatcher.on_outbox),
            identities=identities or sender_identities(engine, clock),
            suppressions=Suppressions(engine, clock),
            forwarding=ReplyForwardingSettings(engine, clock),
        ),
        security=server_security(ACCESS),
    )
    await server.start()
    await server.serving()
    try:
        async with caller_channel(f"127.0.0.1:{server.port}") as channel:
            yield channel
    finally:
        await server.stop(0)


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT's google.rpc.BadRequest detail names."""
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    return [v.field for v in bad_request.field_violations]
