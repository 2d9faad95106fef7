"""The scheduler's API served in-process as the service serves it (TLS, the access rules), for
the tests that call it through a real gRPC channel."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from secured import caller_channel, server_security

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as pb_grpc
from dripiq_common.grpc_server import GrpcServer
from dripiq_scheduler.handlers import ACCESS, SchedulerServicer
from dripiq_scheduler.service import TimerService

SERVICE = pb.DESCRIPTOR.services_by_name["SchedulerService"].full_name


@contextlib.asynccontextmanager
async def served(timers: TimerService) -> AsyncIterator[pb_grpc.SchedulerServiceStub]:
    """A stub, with an operator's token, of a server over `timers`; stopped on the way out."""
    servicer = SchedulerServicer(timers)
    server = GrpcServer(
        address="127.0.0.1:0",
        service_names=[SERVICE],
        register=[lambda s: pb_grpc.add_SchedulerServiceServicer_to_server(servicer, s)],
        security=server_security(ACCESS, serves_as="scheduler"),
    )
    await server.start()
    await server.serving()
    try:
        async with caller_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.SchedulerServiceStub(channel)
    finally:
        await server.stop(0)
