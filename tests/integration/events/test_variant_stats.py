"""A/B variants in the events service's reports: messages sent as a variant count in the
tenant's analytics grouped by VARIANT and in their step's per-variant funnel rows (real
PostgreSQL, the real gRPC server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from events_helpers import CONTACT_EMAIL, accepted_message
from test_tenant_stats import MONDAY, D, ev, post, request

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as pb
from dripiq_devtools.fake_sendgrid import AcceptedMessage, new_message_id


async def send(ingest, tenant_id: str, *, campaign: str, step: int, variant: str) -> AcceptedMessage:  # type: ignore[no-untyped-def]
    """Record a SENT outcome as the dispatcher publishes it for a step sent as `variant`."""
    message_id, x_message_id = str(uuid.uuid4()), new_message_id()
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=tenant_id,
        message_id=message_id,
        campaign_id=campaign,
        step_index=step,
        contact_id="contact-1",
        channel="email",
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider_message_id=x_message_id,
        to_email=CONTACT_EMAIL,
        subject="Hello",
        product_id="product-1",
        sender_identity_id="sender-1",
        strategist="request",
        variant=variant,
    )
    outcome.occurred_at.FromDatetime(datetime(MONDAY.year, MONDAY.month, MONDAY.day, 12, tzinfo=UTC))
    assert await ingest.record_outcome(outcome.SerializeToString())
    return accepted_message(tenant_id, message_id, x_message_id)


def variant_rows(step: pb.StepCounts) -> dict[str, tuple[int, ...]]:
    metrics = (
        "sent",
        "delivered",
        "unique_human_opens",
        "human_open_events",
        "unique_clicks",
        "click_events",
        "replies",
    )
    return {v.variant: tuple(getattr(v.counts, m) for m in metrics) for v in step.variants}


async def test_the_funnel_counts_each_step_per_variant(ingest, stub, tenant_id):  # noqa: F811
    a1 = await send(ingest, tenant_id, campaign="camp-v", step=0, variant="A")
    b1 = await send(ingest, tenant_id, campaign="camp-v", step=1, variant="B")
    plain = await send(ingest, tenant_id, campaign="camp-v", step=2, variant="")
    await post(
        ingest,
        [
            ev(a1, "delivered"),
            ev(a1, "open", 1),
            ev(a1, "open", 2),
            ev(a1, "open", 3, sg_machine_open=True),
            ev(a1, "click", 1, url="https://example.com/1"),
            ev(b1, "delivered"),
            ev(b1, "click", 1, url="https://example.com/1"),
            ev(b1, "click", 2, url="https://example.com/2"),
            ev(plain, "open", 1),
        ],
    )
    # A redelivered batch counts nothing twice.
    await post(ingest, [ev(a1, "open", 1), ev(b1, "click", 2, url="https://example.com/2")])

    funnel = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-v"))

    steps = {s.step_index: s for s in funnel.steps}
    assert variant_rows(steps[0]) == {"A": (1, 1, 1, 2, 1, 1, 0)}
    assert variant_rows(steps[1]) == {"B": (1, 1, 0, 0, 1, 2, 0)}
    assert variant_rows(steps[2]) == {}
    # The variant rows add up to their step's counts.
    for index in (0, 1):
        assert steps[index].variants[0].counts == steps[index].counts


async def test_a_step_split_over_contacts_reports_each_variant(ingest, stub, tenant_id):  # noqa: F811
    sent = {
        name: [await send(ingest, tenant_id, campaign=f"camp-{name}-{i}", step=0, variant=name) for i in range(n)]
        for name, n in (("A", 3), ("B", 2))
    }
    await post(ingest, [ev(sent["A"][0], "click", 1, url="https://example.com/1")])

    stats = await stub.GetTenantStats(request(tenant_id, D.STATS_DIMENSION_VARIANT))

    rows = {r.variant: (r.counts.sent, r.counts.unique_clicks) for r in stats.rows}
    assert rows == {"A": (3, 1), "B": (2, 0)}
    funnel = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id, campaign_id="camp-B-1"))
    assert [(v.variant, v.counts.sent) for v in funnel.steps[0].variants] == [("B", 1)]


async def test_another_tenants_campaign_has_no_variant_rows(ingest, stub, tenant_id):  # noqa: F811
    await send(ingest, tenant_id, campaign="camp-x", step=0, variant="A")
    other = await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=f"{tenant_id}-other", campaign_id="camp-x"))
    assert list(other.steps) == []


async def test_a_funnel_without_a_campaign_names_the_field(stub, tenant_id):  # noqa: F811
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetStepFunnel(pb.GetStepFunnelRequest(tenant_id=tenant_id))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "campaign_id" in (caught.value.details() or "")
