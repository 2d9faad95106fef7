"""A gRPC server with security on (TLS, mTLS for our services, bearer tokens, per-method access),
serving the dispatcher's real API on PostgreSQL: who gets in, and what each may do."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.audit.v1 import audit_pb2
from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq_common.audit import AuditTrail
from dripiq_common.auth import JwtVerifier
from dripiq_common.clock import SystemClock
from dripiq_common.grpc_security import security_for
from dripiq_common.grpc_server import GrpcServer
from dripiq_common.tls import ReloadingChannel, TlsFiles, channel_credentials
from dripiq_devtools.dev_pki import DevCA, DevIssuer
from dripiq_dispatcher.accounts import ProviderAccounts
from dripiq_dispatcher.forwarding import ReplyForwardingSettings
from dripiq_dispatcher.handlers import ACCESS, SERVICE_NAMES, registrars
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sender_auth import SendGridSenderChecks
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks


@dataclass
class Secured:
    port: int
    internal_port: int
    health_port: int
    ca: DevCA
    issuer: DevIssuer
    server_files: TlsFiles
    planner_files: TlsFiles
    folder: Path

    def channel(self, *, ca: Path | None = None) -> grpc.aio.Channel:
        """A TLS channel to the public port, trusting the suite's CA (or `ca`)."""
        creds = grpc.ssl_channel_credentials(root_certificates=(ca or self.ca.path).read_bytes())
        return grpc.aio.secure_channel(f"127.0.0.1:{self.port}", creds)

    def internal_channel(self, client: TlsFiles) -> grpc.aio.Channel:
        """A mutual-TLS channel to the internal port, presenting `client`'s certificate."""
        return grpc.aio.secure_channel(f"127.0.0.1:{self.internal_port}", channel_credentials(client))


@pytest_asyncio.fixture(scope="module")
async def secured(engine: AsyncEngine, nats_conn, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pki")
    ca = DevCA.create(folder)
    issuer = DevIssuer.create(folder)
    server_files = ca.issue(folder, "dispatcher")
    planner_files = ca.issue(folder, "planner")
    clock = SystemClock()
    server = GrpcServer(
        address="127.0.0.1:0",
        service_names=SERVICE_NAMES,
        register=registrars(
            messages=Messages(engine),
            rate_limits=RateLimits(engine, clock),
            tasks=Tasks(engine, clock),
            # Never asked here: nothing listens on the discard port.
            identities=SenderIdentities(
                engine, clock, SendGridSenderChecks("http://127.0.0.1:9", "SG.test"), ProviderAccounts()
            ),
            suppressions=Suppressions(engine, clock),
            forwarding=ReplyForwardingSettings(engine, clock),
        ),
        security=security_for(
            server_files,
            JwtVerifier(issuer=issuer.issuer, audience=issuer.audience, public_keys=[issuer.public_key()]),
            ["planner"],
            internal_address="127.0.0.1:0",
            policies=ACCESS,
            audit=AuditTrail(nats_conn.jetstream(), service="dispatcher"),
        ),
        health_address="127.0.0.1:0",
    )
    await server.start()
    await server.serving()
    try:
        yield Secured(
            server.port,
            server.internal_port or 0,
            server.health_port or 0,
            ca,
            issuer,
            server_files,
            planner_files,
            folder,
        )
    finally:
        await server.stop(0)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def check(channel: grpc.aio.Channel, tenant_id: str, token: str | None = None) -> pb.CheckSuppressionsResponse:
    stub = pb_grpc.SuppressionServiceStub(channel)
    request = pb.CheckSuppressionsRequest(tenant_id=tenant_id, addresses=["ada@example.com"])
    return await stub.CheckSuppressions(request, metadata=bearer(token) if token else None, timeout=10)


async def code_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_a_plaintext_connection_gets_nothing(secured: Secured, tenant_id: str) -> None:
    token = secured.issuer.token("ada", tenants=[tenant_id])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        assert await code_of(check(channel, tenant_id, token)) == grpc.StatusCode.UNAVAILABLE


async def test_a_call_without_a_token_is_unauthenticated_but_health_stays_open(
    secured: Secured, tenant_id: str
) -> None:
    async with secured.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check(channel, tenant_id)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in (caught.value.details() or "")
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_token_acts_for_its_own_tenants_only(secured: Secured, tenant_id: str) -> None:
    other = f"{tenant_id}-other"
    token = secured.issuer.token("ada@acme", tenants=[tenant_id])
    async with secured.channel() as channel:
        assert (await check(channel, tenant_id, token)).suppressed == []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await check(channel, other, token)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert repr(other) in (caught.value.details() or "")


async def test_admin_methods_need_the_admin_role_for_that_tenant(secured: Secured, tenant_id: str) -> None:
    other = f"{tenant_id}-other"
    member = secured.issuer.token("bob", tenants=[tenant_id])
    admin = secured.issuer.token("carol", tenants=[tenant_id], roles=["admin"])
    async with secured.channel() as channel:
        stub = pb_grpc.SuppressionServiceStub(channel)
        await stub.AddSuppression(
            pb.AddSuppressionRequest(tenant_id=tenant_id, address="ada@example.com", reason="manual"),
            metadata=bearer(member),
            timeout=10,
        )
        remove = pb.RemoveSuppressionRequest(tenant_id=tenant_id, address="ada@example.com")
        assert await code_of(stub.RemoveSuppression(remove, metadata=bearer(member), timeout=10)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # Nothing was lost: the unsubscribe still stands.
        assert [s.address for s in (await check(channel, tenant_id, member)).suppressed] == ["ada@example.com"]
        removed = await stub.RemoveSuppression(remove, metadata=bearer(admin), timeout=10)
        assert removed.removed_count == 1
        elsewhere = pb.RemoveSuppressionRequest(tenant_id=other, address="ada@example.com")
        assert await code_of(stub.RemoveSuppression(elsewhere, metadata=bearer(admin), timeout=10)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # The tenant of a nested field counts: a rate limit is set for rate_limit.tenant_id.
        limits = pb_grpc.DispatcherServiceStub(channel)
        foreign = pb.SetRateLimitRequest(rate_limit=pb.RateLimit(tenant_id=other, channel="email", per_day=5))
        assert await code_of(limits.SetRateLimit(foreign, metadata=bearer(admin), timeout=10)) == (
            grpc.StatusCode.PERMISSION_DENIED
        )


async def test_our_services_authenticate_by_their_certificate_on_the_internal_port(
    secured: Secured, tenant_id: str
) -> None:
    async with secured.internal_channel(secured.planner_files) as channel:
        assert (await check(channel, tenant_id)).suppressed == []
        assert (await check(channel, f"{tenant_id}-b")).suppressed == []
    # A certificate the suite signed for something that is not one of its services acts as no one.
    stranger_service = secured.ca.issue(secured.folder, "someone")
    async with secured.internal_channel(stranger_service) as channel:
        assert await code_of(check(channel, tenant_id)) == grpc.StatusCode.UNAUTHENTICATED


async def test_the_internal_port_refuses_a_connection_without_a_certificate(secured: Secured, tenant_id: str) -> None:
    token = secured.issuer.token("ada", tenants=[tenant_id])
    creds = grpc.ssl_channel_credentials(root_certificates=secured.ca.path.read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{secured.internal_port}", creds) as channel:
        assert await code_of(check(channel, tenant_id, token)) == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_authority_is_refused(secured: Secured, tenant_id: str) -> None:
    stranger = DevCA.create(secured.folder / "stranger").issue(secured.folder / "stranger", "planner")
    # It trusts our server, but its own certificate is signed by a CA the server does not know.
    client = TlsFiles(cert=stranger.cert, key=stranger.key, ca=secured.ca.path)
    async with secured.internal_channel(client) as channel:
        assert await code_of(check(channel, tenant_id)) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "why",
    ["expired", "another issuer's key", "another audience", "no expiry", "not a jwt"],
)
async def test_tokens_that_do_not_verify_are_unauthenticated(secured: Secured, tenant_id: str, why: str) -> None:
    forger = DevIssuer.create(secured.folder / "forger")
    token = {
        "expired": lambda: secured.issuer.token("ada", tenants=[tenant_id], ttl=dt.timedelta(minutes=-5)),
        "another issuer's key": lambda: forger.token("ada", tenants=[tenant_id]),
        "another audience": lambda: secured.issuer.token("ada", tenants=[tenant_id], aud="someone-else"),
        "no expiry": lambda: _without_expiry(secured.issuer, tenant_id),
        "not a jwt": lambda: "hello",
    }[why]()
    async with secured.channel() as channel:
        assert await code_of(check(channel, tenant_id, token)) == grpc.StatusCode.UNAUTHENTICATED


def _without_expiry(issuer: DevIssuer, tenant_id: str) -> str:
    import jwt

    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "ada", "tenants": [tenant_id]}
    return jwt.encode(claims, issuer.key, algorithm="ES256")


async def test_a_rotated_server_certificate_is_used_from_the_next_connection(secured: Secured, tenant_id: str) -> None:
    token = secured.issuer.token("ada", tenants=[tenant_id])
    # cert-manager rotates in place: a new CA and certificate written over the served files.
    rotated = DevCA.create(secured.folder / "rotated")
    fresh = rotated.issue(secured.folder / "rotated", "dispatcher")
    old_ca = secured.folder / "old-ca.pem"
    old_ca.write_bytes(secured.ca.path.read_bytes())
    secured.server_files.cert.write_bytes(fresh.cert.read_bytes())
    secured.server_files.key.write_bytes(fresh.key.read_bytes())
    try:
        async with secured.channel(ca=rotated.path) as channel:
            assert (await check(channel, tenant_id, token)).suppressed == []
        async with secured.channel(ca=old_ca) as channel:
            assert await code_of(check(channel, tenant_id, token)) == grpc.StatusCode.UNAVAILABLE
    finally:
        # Put the original back for the module's other tests.
        restored = secured.ca.issue(secured.folder, "dispatcher")
        assert restored == secured.server_files


async def test_the_health_port_answers_probes_in_plaintext_and_serves_nothing_else(
    secured: Secured, tenant_id: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.health_port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert await code_of(check(channel, tenant_id)) == grpc.StatusCode.UNIMPLEMENTED


async def audit_records(js, tenant_id: str) -> list[audit_pb2.AuditRecord]:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe(f"dripiq.audit.record.{tenant_id}", stream="AUDIT")
    try:
        msgs = await sub.fetch(20, timeout=2)
    except TimeoutError:
        msgs = []
    finally:
        await sub.unsubscribe()
    return [audit_pb2.AuditRecord.FromString(m.data) for m in msgs]


async def test_admin_calls_are_audited_with_who_what_and_how_they_ended(secured: Secured, js, tenant_id: str) -> None:  # type: ignore[no-untyped-def]
    member = secured.issuer.token("bob", tenants=[tenant_id])
    admin = secured.issuer.token("carol", tenants=[tenant_id], roles=["admin"])
    async with secured.channel() as channel:
        stub = pb_grpc.SuppressionServiceStub(channel)
        remove = pb.RemoveSuppressionRequest(tenant_id=tenant_id, address="gone@example.com")
        await code_of(stub.RemoveSuppression(remove, metadata=bearer(member), timeout=10))
        await stub.RemoveSuppression(remove, metadata=bearer(admin), timeout=10)
        # A read is not a change: no record.
        await check(channel, tenant_id, member)

    denied, done = await eventually(lambda: _two(js, tenant_id), "two audit records")
    assert (denied.actor, denied.result, denied.method) == (
        "bob",
        "PERMISSION_DENIED",
        "/dripiq.dispatcher.v1.SuppressionService/RemoveSuppression",
    )
    assert (done.actor, list(done.actor_roles), done.result, done.error) == ("carol", ["admin"], "OK", "")
    assert dict(done.resource) == {"address": "gone@example.com"}
    assert done.tenant_id == tenant_id and done.service == "dispatcher"


async def _two(js, tenant_id: str) -> list[audit_pb2.AuditRecord] | None:  # type: ignore[no-untyped-def]
    records = await audit_records(js, tenant_id)
    return records if len(records) >= 2 else None


async def test_a_services_rotated_client_certificate_is_used_from_the_next_call(
    secured: Secured, tenant_id: str, tmp_path: Path
) -> None:
    own = TlsFiles(cert=tmp_path / "planner.pem", key=tmp_path / "planner-key.pem", ca=secured.ca.path)
    own.cert.write_bytes(secured.planner_files.cert.read_bytes())
    own.key.write_bytes(secured.planner_files.key.read_bytes())
    source = ReloadingChannel(f"127.0.0.1:{secured.internal_port}", own, grace_seconds=0, check_seconds=0)
    try:
        assert (await check(source.get(), tenant_id)).suppressed == []
        # cert-manager writes a new pair in place; here one the server does not trust, so the
        # refusal shows the next call took the new files.
        stranger = DevCA.create(tmp_path / "stranger").issue(tmp_path / "stranger", "planner")
        own.cert.write_bytes(stranger.cert.read_bytes())
        own.key.write_bytes(stranger.key.read_bytes())
        assert await code_of(check(source.get(), tenant_id)) == grpc.StatusCode.UNAVAILABLE
    finally:
        await source.close()
