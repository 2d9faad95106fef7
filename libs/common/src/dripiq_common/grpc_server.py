"""grpc.aio server bootstrap: the error-mapping interceptor, health and reflection."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from dripiq_common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

log = structlog.get_logger(__name__)

_CODES: list[tuple[type[DomainError], int]] = [
    (InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (NotFound, code_pb2.NOT_FOUND),
    (AlreadyExists, code_pb2.ALREADY_EXISTS),
    (FailedPrecondition, code_pb2.FAILED_PRECONDITION),
]


def status_for(exc: Exception) -> status_pb2.Status:
    """The google.rpc.Status a caller sees for an exception; INVALID_ARGUMENT names the field."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            status = status_pb2.Status(code=code, message=str(exc))
            if isinstance(exc, InvalidArgument):
                detail = any_pb2.Any()
                detail.Pack(
                    error_details_pb2.BadRequest(
                        field_violations=[
                            error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
                        ]
                    )
                )
                status.details.append(detail)
            return status
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """The one place that turns domain errors into gRPC status codes."""

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method

        async def mapped(request, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except DomainError as exc:
                await context.abort_with_status(rpc_status.to_status(status_for(exc)))
            except Exception as exc:
                log.error("rpc.internal_error", method=method, error=repr(exc), trace=traceback.format_exc())
                await context.abort_with_status(rpc_status.to_status(status_for(exc)))

        return grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


Registrar = Callable[[grpc.aio.Server], None]


class GrpcServer:
    """A grpc.aio server with the standard health service (NOT_SERVING until ready) and reflection."""

    def __init__(self, *, address: str, service_names: Sequence[str], register: Sequence[Registrar]) -> None:
        self.server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
        self.health = health.aio.HealthServicer()
        self.service_names = list(service_names)
        for add in register:
            add(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise SystemExit(f"cannot listen on {address}")

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()

    async def serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)
