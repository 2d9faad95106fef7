"""What a caller may do: the gRPC interceptor that authenticates every call (dripiq_common.auth)
and checks it against the method's access rule before the handler runs.

- No credentials, or credentials that do not verify: UNAUTHENTICATED, with the reason.
- A request for a tenant the principal may not act for, or a method that needs a role the
  principal lacks: PERMISSION_DENIED, naming what is missing.
- Health and reflection stay open (probes and grpcurl's discovery carry no token).

The tenant is read from the request itself (its `tenant_id`, or the `tenant_id` of a message
field such as `rate_limit`), the field the handler will act on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from dripiq_common.audit import AuditTrail
from dripiq_common.auth import JwtVerifier, Principal, Role, Unauthenticated, bearer_token, service_principal
from dripiq_common.status_codes import status_for

# The principal of the call the current task handles (each RPC runs in its own task).
_CALLER: ContextVar[Principal | None] = ContextVar("dripiq_caller", default=None)


def caller() -> Principal | None:
    """Who makes the call being handled, for a handler that records who acted; None on a
    server that authenticates nobody (no credentials configured)."""
    return _CALLER.get()


# Services every caller may use without credentials.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"})


@dataclass(frozen=True)
class Access:
    """Who may call a method: a principal with one of `roles` (any principal when empty),
    acting for the request's tenant."""

    roles: frozenset[Role] = frozenset()
    # Every call is recorded on the audit trail (dripiq_common.audit), refused ones included.
    audited: bool = False


# Any principal acting for the request's tenant.
TENANT = Access()
# A tenant's administrator (for that tenant), or an operator: state-changing, so audited.
ADMIN = Access(roles=frozenset({Role.ADMIN, Role.OPERATOR}), audited=True)
# Our own services and operators only (the scheduler's API): its reads, and its changes (audited).
INTERNAL = Access(roles=frozenset({Role.SERVICE, Role.OPERATOR}))
INTERNAL_CHANGE = Access(roles=frozenset({Role.SERVICE, Role.OPERATOR}), audited=True)
# Roles that act for every tenant, and so may call a method whose request names none.
_CROSS_TENANT = frozenset({Role.SERVICE, Role.OPERATOR})


def access_rules(service: ServiceDescriptor, access: Access, methods: Sequence[str] = ()) -> dict[str, Access]:
    """`access` for the named methods of `service` (every method when none is named); a name
    the service lacks is an error at import, not a method left open."""
    names = methods or [m.name for m in service.methods]
    return {f"/{service.full_name}/{service.methods_by_name[name].name}": access for name in names}


@dataclass
class Authenticator:
    """Finds the principal of a call: one of our services by its verified client certificate
    (its subject alternative names or common name: a service's name, or that name and a dot,
    as in planner.dripiq.svc), else a caller by its bearer token."""

    verifier: JwtVerifier | None = None
    services: Sequence[str] = ()

    def service_of(self, certificate_name: str) -> str | None:
        for service in self.services:
            if certificate_name == service or certificate_name.startswith(f"{service}."):
                return service
        return None

    async def principal(self, context: grpc.aio.ServicerContext) -> Principal:
        peer = context.auth_context()
        if peer.get("transport_security_type") == [b"ssl"]:
            names = [*peer.get("x509_subject_alternative_name", []), *peer.get("x509_common_name", [])]
            for name in names:
                service = self.service_of(name.decode(errors="replace"))
                if service is not None:
                    return service_principal(service)
        token = bearer_token(context.invocation_metadata() or ())
        if token is None:
            raise Unauthenticated("no credentials: send 'authorization: Bearer <token>'")
        if self.verifier is None:
            raise Unauthenticated("this server accepts only the suite's own services")
        if self.verifier.jwks_url:
            # A new key id fetches the key set over the network: not on the event loop.
            return await asyncio.to_thread(self.verifier.principal, token)
        return self.verifier.principal(token)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes every unary call; `policies` maps a full method name
    (`/dripiq.dispatcher.v1.SuppressionService/RemoveSuppression`) to its Access, TENANT
    otherwise."""

    def __init__(
        self, authenticator: Authenticator, policies: Mapping[str, Access], audit: AuditTrail | None = None
    ) -> None:
        self.authenticator = authenticator
        self.policies = dict(policies)
        self.audit = audit

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.lstrip("/").partition("/")[0] in OPEN_SERVICES:
            return handler
        if handler.unary_unary is None:
            # Every dripiq RPC is unary: anything else has no rule, so nobody may call it.
            return _refusing(handler, "streaming methods are not served")
        inner = handler.unary_unary
        access = self.policies.get(method, TENANT)

        async def checked(request: Message, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = await self.authenticator.principal(context)
            except Unauthenticated as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            audit = self.audit if access.audited else None
            tenant = tenant_of(request) or ""
            denied = refusal(principal, access, request)
            if denied:
                if audit is not None:
                    await audit.record(principal, method, tenant, request, "PERMISSION_DENIED", denied)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied)
            bound = _CALLER.set(principal)
            try:
                response = await inner(request, context)
            except grpc.aio.AbortError:
                if audit is not None:
                    code = context.code()
                    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                    await audit.record(principal, method, tenant, request, name, context.details() or "")
                raise
            except Exception as exc:
                if audit is not None:
                    status = status_for(exc)
                    await audit.record(
                        principal, method, tenant, request, code_pb2.Code.Name(status.code), status.message
                    )
                raise
            finally:
                _CALLER.reset(bound)
            if audit is not None:
                await audit.record(principal, method, tenant, request, "OK")
            return response

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def refusal(principal: Principal, access: Access, request: Message) -> str:
    """Why `principal` may not make this request ("" when it may)."""
    if access.roles and not principal.has_any(access.roles):
        needed = " or ".join(sorted(role.value for role in access.roles))
        return f"{principal.subject} lacks the role this method needs ({needed})"
    tenant = tenant_of(request)
    if tenant is None:
        if principal.has_any(_CROSS_TENANT):
            return ""
        return f"{principal.subject} may not call a method that names no tenant"
    # An empty tenant_id acts for no one: the handler refuses it as INVALID_ARGUMENT.
    if tenant and not principal.may_act_for(tenant):
        return f"{principal.subject} may not act for tenant {tenant!r}"
    return ""


def tenant_of(request: Message) -> str | None:
    """The tenant a request acts for: its `tenant_id`, else that of its first set message field
    that has one (`rate_limit.tenant_id`, `timer.tenant_id`); None when it names none."""
    path = tenant_path(request.DESCRIPTOR)
    if path is None:
        return None
    holder: Any = request
    for name in path[:-1]:
        if not holder.HasField(name):
            return ""
        holder = getattr(holder, name)
    return str(getattr(holder, path[-1]))


@cache
def tenant_path(descriptor: Descriptor) -> tuple[str, ...] | None:
    if "tenant_id" in descriptor.fields_by_name:
        return ("tenant_id",)
    for f in descriptor.fields:
        nested = f.message_type
        if nested is not None and not f.is_repeated and "tenant_id" in nested.fields_by_name:
            return (f.name, "tenant_id")
    return None


def _refusing(handler: grpc.RpcMethodHandler, why: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, why)

    return grpc.unary_unary_rpc_method_handler(
        refuse, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )
