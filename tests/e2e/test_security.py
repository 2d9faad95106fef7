"""Every service as `make run` starts it, reached the way a caller outside the suite reaches it:
who gets in and what each caller may do (docs/security.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from support import channel

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as ppb
from dripiq.planner.v1 import campaign_service_pb2_grpc as ppb_grpc
from dripiq.scheduler.v1 import scheduler_service_pb2 as spb
from dripiq.scheduler.v1 import scheduler_service_pb2_grpc as spb_grpc
from dripiq_devtools.suite import Suite

# One tenant-scoped read per service: (port, a call taking a channel and a tenant).
Call = Callable[[grpc.Channel, str], Any]
READS: dict[str, tuple[str, Call]] = {
    "planner": (
        "PLANNER_GRPC_PORT",
        lambda ch, t: ppb_grpc.CampaignServiceStub(ch).GetTenantSettings(
            ppb.GetTenantSettingsRequest(tenant_id=t), timeout=10
        ),
    ),
    "dispatcher": (
        "DISPATCHER_GRPC_PORT",
        lambda ch, t: dpb_grpc.SuppressionServiceStub(ch).ListSuppressions(
            dpb.ListSuppressionsRequest(tenant_id=t), timeout=10
        ),
    ),
    "events": (
        "EVENTS_GRPC_PORT",
        lambda ch, t: epb_grpc.EventsServiceStub(ch).ListInboundMessages(
            epb.ListInboundMessagesRequest(tenant_id=t), timeout=10
        ),
    ),
    "scheduler": (
        "SCHEDULER_GRPC_PORT",
        lambda ch, t: spb_grpc.SchedulerServiceStub(ch).ListTimers(spb.ListTimersRequest(tenant_id=t), timeout=10),
    ),
}
# One admin method per service that has them (the scheduler's are all for services and operators).
ADMIN_CALLS: dict[str, tuple[str, Call]] = {
    "planner": (
        "PLANNER_GRPC_PORT",
        lambda ch, t: ppb_grpc.CampaignServiceStub(ch).UpdateTenantSettings(
            ppb.UpdateTenantSettingsRequest(
                settings=ppb.TenantSettings(tenant_id=t, postal_address="1 Main St, Springfield"),
                update_mask=field_mask_pb2.FieldMask(paths=["postal_address"]),
            ),
            timeout=10,
        ),
    ),
    "dispatcher": (
        "DISPATCHER_GRPC_PORT",
        lambda ch, t: dpb_grpc.SuppressionServiceStub(ch).RemoveSuppression(
            dpb.RemoveSuppressionRequest(tenant_id=t, address="ada@example.com"), timeout=10
        ),
    ),
    "scheduler": READS["scheduler"],
}


def code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()  # type: ignore[attr-defined]


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("service", sorted(READS))
def test_a_plaintext_connection_fails(suite: Suite, service: str) -> None:
    port_env, read = READS[service]
    with grpc.insecure_channel(f"127.0.0.1:{suite.port(port_env)}") as ch:
        assert code(lambda: read(ch, tenant())) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", sorted(READS))
def test_no_token_is_unauthenticated(suite: Suite, service: str) -> None:
    assert suite.security is not None
    port_env, read = READS[service]
    with grpc.secure_channel(f"127.0.0.1:{suite.port(port_env)}", suite.security.credentials()) as ch:
        assert code(lambda: read(ch, tenant())) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("service", ["planner", "dispatcher", "events"])
def test_a_tenants_token_reads_its_own_data_and_not_another_tenants(suite: Suite, service: str) -> None:
    assert suite.security is not None
    mine, theirs = tenant(), tenant()
    port_env, read = READS[service]
    with channel(suite, port_env, token=suite.security.token("ada", tenants=[mine])) as ch:
        read(ch, mine)
        assert code(lambda: read(ch, theirs)) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("service", sorted(ADMIN_CALLS))
def test_a_non_admin_is_denied_admin_methods(suite: Suite, service: str) -> None:
    assert suite.security is not None
    mine = tenant()
    port_env, call = ADMIN_CALLS[service]
    with channel(suite, port_env, token=suite.security.token("bob", tenants=[mine])) as ch:
        assert code(lambda: call(ch, mine)) == grpc.StatusCode.PERMISSION_DENIED


def test_a_tenant_admin_may_change_its_own_settings(suite: Suite) -> None:
    assert suite.security is not None
    mine = tenant()
    token = suite.security.token("carol", tenants=[mine], roles=["admin"])
    with channel(suite, "PLANNER_GRPC_PORT", token=token) as ch:
        updated = ADMIN_CALLS["planner"][1](ch, mine)
        assert updated.settings.tenant_id == mine
