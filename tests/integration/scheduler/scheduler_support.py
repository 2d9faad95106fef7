"""What the scheduler's tests share: its API served in-process as the service serves it (TLS,
the access rules) for the tests that call it through a real gRPC channel, the planner timers
they schedule, and what reached the stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.js.errors import NotFoundError
from secured import caller_channel, server_security

from dripiq.planner.v1 import timers_pb2
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


def planner_timer(tenant_id: str, key: str, fire_at: datetime, campaign: str = "c", group: str = "g") -> pb.Timer:
    """A step timer for the planner whose payload names `campaign`."""
    t = pb.Timer(
        tenant_id=tenant_id,
        key=key,
        group_key=group,
        kind="step_due",
        target=pb.TIMER_TARGET_PLANNER_TIMER,
        payload=timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id=campaign).SerializeToString(),
    )
    t.fire_at.FromDatetime(fire_at)
    return t


async def published_count(js, subject: str) -> int:  # type: ignore[no-untyped-def]
    """Messages on a subject, read from the stream itself (no consumer needed)."""
    info = await js.stream_info("PLANNER_TIMERS", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def stream_messages(js, stream: str, subject: str) -> list:  # type: ignore[no-untyped-def,type-arg]
    """Every message on a subject, in stream order, read without a consumer."""
    found, seq = [], 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(msg)
        seq = msg.seq + 1


def violation_of(exc: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest.FieldViolation:
    """The one field an INVALID_ARGUMENT's BadRequest detail names, and why."""
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    [detail] = rpc_status.from_call(exc).details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    [violation] = bad_request.field_violations
    return violation


async def refused(call) -> error_details_pb2.BadRequest.FieldViolation:  # type: ignore[no-untyped-def]
    """What a call refused as INVALID_ARGUMENT names: its field and why."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return violation_of(exc.value)
