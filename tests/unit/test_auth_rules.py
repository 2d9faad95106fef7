"""Authorization on plain values: claims to a principal, and what a principal may ask for."""

from __future__ import annotations

import pytest

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.planner.v1 import campaign_service_pb2 as ppb
from dripiq.scheduler.v1 import scheduler_service_pb2 as spb
from dripiq_common.auth import ALL_TENANTS, Principal, Role, Unauthenticated, bearer_token, principal_from_claims
from dripiq_common.authz import ADMIN, INTERNAL, TENANT, refusal, tenant_of

MEMBER = Principal("ada", frozenset({"t1"}))
ADMIN_T1 = Principal("carol", frozenset({"t1"}), frozenset({Role.ADMIN}))
SERVICE = Principal("service:planner", frozenset({ALL_TENANTS}), frozenset({Role.SERVICE}))


def test_claims_become_a_principal() -> None:
    principal = principal_from_claims({"sub": "ada", "tenants": ["t1", "t2"], "roles": ["admin", "billing"]})

    assert principal == Principal("ada", frozenset({"t1", "t2"}), frozenset({Role.ADMIN}))
    assert principal_from_claims({"sub": "bob", "tenant_id": "t9"}).tenants == frozenset({"t9"})
    assert principal_from_claims({"sub": "eve"}).tenants == frozenset()


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": ""},
        {"sub": "ada", "tenants": "t1"},
        {"sub": "ada", "tenants": [1]},
        {"sub": "ada", "roles": "admin"},
    ],
)
def test_malformed_claims_are_unauthenticated(claims: dict) -> None:
    with pytest.raises(Unauthenticated):
        principal_from_claims(claims)


def test_the_tenant_is_read_where_the_request_names_it() -> None:
    assert tenant_of(dpb.CheckSuppressionsRequest(tenant_id="t1")) == "t1"
    assert tenant_of(dpb.SetRateLimitRequest(rate_limit=dpb.RateLimit(tenant_id="t2"))) == "t2"
    assert tenant_of(dpb.SetRateLimitRequest()) == ""
    assert tenant_of(spb.ScheduleTimerRequest(timer=spb.Timer(tenant_id="t3"))) == "t3"
    assert tenant_of(ppb.BatchCreateCampaignsRequest(tenant_id="t4")) == "t4"


def test_a_member_acts_for_its_tenants_only() -> None:
    assert refusal(MEMBER, TENANT, dpb.CheckSuppressionsRequest(tenant_id="t1")) == ""
    assert "tenant 't2'" in refusal(MEMBER, TENANT, dpb.CheckSuppressionsRequest(tenant_id="t2"))


def test_admin_methods_need_the_role_and_the_tenant() -> None:
    remove = dpb.RemoveSuppressionRequest(tenant_id="t1", address="a@b.test")
    assert "admin or operator" in refusal(MEMBER, ADMIN, remove)
    assert refusal(ADMIN_T1, ADMIN, remove) == ""
    assert "tenant 't2'" in refusal(ADMIN_T1, ADMIN, dpb.RemoveSuppressionRequest(tenant_id="t2"))
    # Our services are no administrators.
    assert refusal(SERVICE, ADMIN, remove) != ""


def test_internal_methods_are_for_services_and_operators() -> None:
    timer = spb.ScheduleTimerRequest(timer=spb.Timer(tenant_id="t1"))
    assert refusal(SERVICE, INTERNAL, timer) == ""
    assert refusal(Principal("op", frozenset({ALL_TENANTS}), frozenset({Role.OPERATOR})), INTERNAL, timer) == ""
    assert "operator or service" in refusal(ADMIN_T1, INTERNAL, timer)


def test_a_bearer_header_must_be_well_formed() -> None:
    assert bearer_token([("authorization", "Bearer abc.def.ghi")]) == "abc.def.ghi"
    assert bearer_token([("x-other", "1")]) is None
    with pytest.raises(Unauthenticated):
        bearer_token([("authorization", "Basic dXNlcjpwdw==")])


def test_a_bus_payload_must_name_only_its_subjects_tenant() -> None:
    from dripiq.dispatcher.v1 import messages_pb2 as dmsg
    from dripiq.events.v1 import messages_pb2 as emsg
    from dripiq.scheduler.v1 import commands_pb2
    from dripiq_common.bus.contract import Streams, Subjects, refused_payload

    send = dmsg.SendMessageCommand(tenant_id="t1", message_id="m").SerializeToString()
    assert refused_payload(Streams.DISPATCHER_SEND, Subjects.dispatcher_send("t1"), send) == ""
    assert "'t1'" in refused_payload(Streams.DISPATCHER_SEND, Subjects.dispatcher_send("t2"), send)
    # One foreign event in a batch is enough.
    batch = emsg.EngagementBatch(events=[emsg.EngagementEvent(tenant_id="t1"), emsg.EngagementEvent(tenant_id="t9")])
    assert "'t9'" in refused_payload(Streams.ENGAGEMENT, Subjects.engagement("t1", "open"), batch.SerializeToString())
    # Nested timers count too.
    command = commands_pb2.TimerCommand(tenant_id="t1", schedule=spb.Timer(tenant_id="t2", key="k"))
    assert "'t2'" in refused_payload(
        Streams.SCHEDULER_COMMANDS, Subjects.scheduler_command("t1"), command.SerializeToString()
    )
    # A reply whose tenant only the dispatcher can tell names none, on a subject of none.
    anonymous = dmsg.ForwardReplyCommand(message_id="m").SerializeToString()
    assert refused_payload(Streams.DISPATCHER_FORWARD, Subjects.DISPATCHER_FORWARD_BY_MESSAGE, anonymous) == ""
    # Raw webhooks carry no tenant; an unreadable payload is its handler's to refuse.
    assert refused_payload(Streams.EDGE_WEBHOOKS, Subjects.EDGE_SENDGRID_EVENTS, b"anything") == ""
    assert refused_payload(Streams.DISPATCHER_SEND, Subjects.dispatcher_send("t1"), b"\xff\xff") == ""


def test_a_bus_payload_with_a_nul_in_its_text_is_refused_by_field() -> None:
    from dripiq.events.v1 import messages_pb2 as emsg
    from dripiq_common.bus.contract import Streams, Subjects, refused_payload

    batch = emsg.EngagementBatch(events=[emsg.EngagementEvent(tenant_id="t1", message_id="m\x00")])
    assert refused_payload(Streams.ENGAGEMENT, Subjects.engagement("t1", "open"), batch.SerializeToString()) == (
        "EngagementBatch.events[0].message_id contains a NUL character"
    )
