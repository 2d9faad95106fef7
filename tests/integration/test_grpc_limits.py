"""A server's limits: an oversized request and one call too many are refused with
RESOURCE_EXHAUSTED before any handler runs, and the server goes on serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import eventually

from dripiq_common.grpc_server import GrpcLimits, GrpcServer

LIMITS = GrpcLimits(max_message_bytes=64 * 1024, max_concurrent_rpcs=2)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[GrpcServer]:
    server = GrpcServer(address="127.0.0.1:0", service_names=["dripiq.test.v1.Nothing"], register=[], limits=LIMITS)
    await server.start()
    await server.serving()
    yield server
    await server.stop(0)


def health(channel: grpc.aio.Channel) -> health_pb2_grpc.HealthStub:
    return health_pb2_grpc.HealthStub(channel)


async def test_a_request_over_the_size_limit_is_resource_exhausted(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Check(health_pb2.HealthCheckRequest(service="x" * (LIMITS.max_message_bytes + 1)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (refused.value.details() or "")
        # The connection and the server are fine afterwards.
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_calls_beyond_the_concurrency_limit_are_resource_exhausted(server: GrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health(channel)
        # Watch calls stay open: each holds one of the server's slots until it is canceled.
        watches = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(LIMITS.max_concurrent_rpcs)]
        for watch in watches:
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for watch in watches:
            watch.cancel()

        async def served() -> bool:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False
            return answer.status == health_pb2.HealthCheckResponse.SERVING

        # A slot comes back once the server has seen the cancel.
        await eventually(served, "the server to take calls again after the open ones ended")
