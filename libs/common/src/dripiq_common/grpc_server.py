"""grpc.aio server bootstrap: the error-mapping interceptor (which also counts and times every
RPC), health and reflection, and, when given, TLS with the authentication and authorization
interceptor (dripiq_common.authz)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
import structlog
from google.rpc import code_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from dripiq_common.audit import AuditTrail
from dripiq_common.authz import Access, Authenticator, AuthInterceptor
from dripiq_common.errors import (
    DomainError,
)
from dripiq_common.request_checks import check_request, checking_deserializer
from dripiq_common.status_codes import status_for
from dripiq_common.tls import ReloadingServerCredentials

log = structlog.get_logger(__name__)

RPCS = Counter(
    "dripiq_grpc_server_handled",
    "RPCs answered, by service, method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "dripiq_grpc_server_handling_seconds",
    "Time to answer an RPC, by service and method",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """The one place that turns domain errors into gRPC status codes, and counts and times
    every RPC by the code it ended with. Before any handler, the request passes the checks every
    request must (dripiq_common.request_checks: its tenant id, no NUL in its text)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method
        service_name, _, method_name = method.lstrip("/").partition("/")

        async def mapped(request, context: grpc.aio.ServicerContext):
            started = time.perf_counter()
            code = "OK"
            try:
                check_request(request)
                return await inner(request, context)
            except grpc.aio.AbortError:
                aborted = context.code()
                code = aborted.name if isinstance(aborted, grpc.StatusCode) else "UNKNOWN"
                raise
            except DomainError as exc:
                status = status_for(exc)
                code = code_pb2.Code.Name(status.code)
                await context.abort_with_status(rpc_status.to_status(status))
            except Exception as exc:
                status = status_for(exc)
                code = code_pb2.Code.Name(status.code)
                if status.code == code_pb2.UNAVAILABLE:
                    log.warning("rpc.unavailable", method=method, error=repr(exc))
                else:
                    log.error("rpc.internal_error", method=method, error=repr(exc), trace=traceback.format_exc())
                await context.abort_with_status(rpc_status.to_status(status))
            finally:
                RPCS.labels(grpc_service=service_name, grpc_method=method_name, grpc_code=code).inc()
                RPC_SECONDS.labels(grpc_service=service_name, grpc_method=method_name).observe(
                    time.perf_counter() - started
                )

        return grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=checking_deserializer(handler.request_deserializer)
            if handler.request_deserializer
            else None,
            response_serializer=handler.response_serializer,
        )


Registrar = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True)
class GrpcLimits:
    """What one server takes at most: a request (or answer) of `max_message_bytes`, and
    `max_concurrent_rpcs` calls at once; beyond either the caller gets RESOURCE_EXHAUSTED
    before a handler runs, so a flood costs no database work."""

    max_message_bytes: int = 4 * 1024 * 1024
    max_concurrent_rpcs: int = 256

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


@dataclass(frozen=True)
class ServerSecurity:
    """TLS, and who may call which method.

    Two listeners share the server: the public one (TLS; callers bring a bearer token) and the
    internal one (mutual TLS: only a certificate of the suite's CA gets a connection, and a
    service certificate named in the authenticator acts as that service). gRPC's Python server
    cannot ask for a client certificate without requiring one, hence two ports.
    """

    public: ReloadingServerCredentials
    internal: ReloadingServerCredentials
    internal_address: str
    authenticator: Authenticator
    # Full method name -> its Access; a method not named is tenant-scoped (authz.TENANT).
    policies: Mapping[str, Access] = field(default_factory=dict)
    # Where audited calls are recorded (dripiq_common.audit); None records nothing.
    audit: AuditTrail | None = None


class GrpcServer:
    """A grpc.aio server with the standard health service (NOT_SERVING until ready) and, when
    `reflection_enabled`, reflection. With `security` it listens on TLS only (a public and an
    internal port) and authenticates and authorizes every call but health and reflection;
    without, it listens in plaintext on one port."""

    def __init__(
        self,
        *,
        address: str,
        service_names: Sequence[str],
        register: Sequence[Registrar],
        security: ServerSecurity | None = None,
        reflection_enabled: bool = True,
        health_address: str = "",
        limits: GrpcLimits | None = None,
    ) -> None:
        interceptors: list[grpc.aio.ServerInterceptor] = [ErrorMappingInterceptor()]
        if security is not None:
            interceptors.append(AuthInterceptor(security.authenticator, security.policies, security.audit))
        limits = limits or GrpcLimits()
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=limits.options(),
            maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        )
        self.health = health.aio.HealthServicer()
        self.service_names = list(service_names)
        for add in register:
            add(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if reflection_enabled:
            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        self.internal_port: int | None = None
        if security is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, security.public.credentials())
            self.internal_port = self.server.add_secure_port(security.internal_address, security.internal.credentials())
            if self.internal_port == 0:
                raise SystemExit(f"cannot listen on {security.internal_address}")
        if self.port == 0:
            raise SystemExit(f"cannot listen on {address}")
        # Kubernetes' gRPC probes speak plaintext only: health alone, on a port of its own.
        self.health_server: grpc.aio.Server | None = None
        self.health_port: int | None = None
        if health_address:
            self.health_server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            self.health_port = self.health_server.add_insecure_port(health_address)
            if self.health_port == 0:
                raise SystemExit(f"cannot listen on {health_address}")

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()

    async def serving(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)

    async def _set_all(self, status: int) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)
