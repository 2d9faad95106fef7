"""CampaignService on real PostgreSQL, creating campaigns: batch create (each item reported,
one timer batch outboxed, a bad batch refused whole), API errors as gRPC status codes naming
the field, and the template strategist when a request brings no strategy.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from helpers import (
    T0,
    at,
    count_campaigns,
    drain_outbox,
    item,
    raw_timer_commands,
    request,
    schedules,
    strategy,
    timer_commands,
    within_jitter,
)
from owner_servers import planner_server
from secured import caller_channel
from sqlalchemy import select

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.errors import InvalidArgument
from dripiq_planner import templates
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.creating import MAX_BATCH
from dripiq_planner.handlers import CampaignServicer
from dripiq_planner.models import ai_generations
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor


def field_of(status) -> str:  # type: ignore[no-untyped-def]
    """The field a google.rpc.Status's BadRequest detail names."""
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    [violation] = bad_request.field_violations
    return violation.field


# -- batch create ---------------------------------------------------------------------------


async def test_batch_create_reports_each_item_and_outboxes_one_timer_batch(engine, creator, tenant_id):
    batch = pb.BatchCreateCampaignsRequest(
        tenant_id=tenant_id,
        requests=[
            item("c1", request_id="r-1"),
            item("c2", request_id="r-2"),
            item("c3"),
            item("c4", contact=pb.Contact(contact_id="c4", email="not-an-email")),
            item("c1"),  # the same contact and product as the first item
            item("c1", request_id="r-1"),  # the first item again
        ],
    )

    response = await creator.batch_create(batch)

    results = response.results
    assert [r.WhichOneof("result") for r in results] == [
        "campaign",
        "campaign",
        "campaign",
        "error",
        "error",
        "campaign",
    ]
    first = results[0].campaign
    assert {r.campaign.tenant_id for r in results[:3]} == {tenant_id}
    assert [r.campaign.contact_id for r in results[:3]] == ["c1", "c2", "c3"]
    assert results[3].error.code == code_pb2.INVALID_ARGUMENT
    assert field_of(results[3].error) == "contact.email"
    assert results[4].error.code == code_pb2.ALREADY_EXISTS
    assert first.campaign_id in results[4].error.message
    assert results[5].campaign.campaign_id == first.campaign_id
    assert await count_campaigns(engine, tenant_id) == 3

    rows = await drain_outbox(engine, tenant_id)
    [command] = raw_timer_commands(rows)
    assert len(rows) == 1 and command.HasField("schedule_batch")
    timers = command.schedule_batch.timers
    assert sorted(t.key for t in timers) == sorted(f"{r.campaign.campaign_id}:step" for r in results[:3])
    assert {t.kind for t in timers} == {"step_due"}
    for timer, result in zip(timers, results[:3], strict=True):
        assert at(timer.fire_at) == at(result.campaign.steps[0].scheduled_at)
        assert within_jitter(timer.fire_at, T0)

    # The whole batch again: request ids answer with their campaigns, nothing new is planned.
    again = await creator.batch_create(batch)
    assert again.results[0].campaign.campaign_id == first.campaign_id
    assert again.results[1].campaign.campaign_id == results[1].campaign.campaign_id
    assert [r.error.code for r in again.results[2:5]] == [
        code_pb2.ALREADY_EXISTS,
        code_pb2.INVALID_ARGUMENT,
        code_pb2.ALREADY_EXISTS,
    ]
    assert again.results[5].campaign.campaign_id == first.campaign_id
    assert await drain_outbox(engine, tenant_id) == []
    assert await count_campaigns(engine, tenant_id) == 3


@pytest.mark.parametrize(
    ("size", "tenant_of_item", "field"),
    [
        (MAX_BATCH + 1, "", "requests"),
        (0, "", "requests"),
        (2, "someone-else", "requests.tenant_id"),
    ],
)
async def test_batch_create_refuses_a_bad_batch_whole(engine, creator, tenant_id, size, tenant_of_item, field):
    batch = pb.BatchCreateCampaignsRequest(
        tenant_id=tenant_id,
        requests=[item(f"c{i}", tenant_id=tenant_of_item) for i in range(size)],
    )
    with pytest.raises(InvalidArgument) as exc:
        await creator.batch_create(batch)
    assert exc.value.field == field
    assert await count_campaigns(engine, tenant_id) == 0
    assert await drain_outbox(engine, tenant_id) == []


async def test_api_errors_map_to_grpc_status_codes_naming_the_field(
    engine, campaigns, creator, strategy_preview, tenant_settings, tenant_id
):
    servicer = CampaignServicer(
        creator=creator,
        campaigns=campaigns,
        preview=strategy_preview,
        tenant_settings=tenant_settings,
        approval=CampaignApproval(engine, creator.clock, campaigns),
        step_editor=StepEditor(engine, creator.clock, campaigns),
        stats=TenantStats(engine, campaigns.clock, BudgetLimits(calls=10, tokens=1000), 8),
    )
    async with (
        planner_server(servicer) as served,
        caller_channel(served.public) as channel,
    ):
        stub = pb_grpc.CampaignServiceStub(channel)
        too_many = pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=[item("c")] * (MAX_BATCH + 1))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.BatchCreateCampaigns(too_many)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_of(rpc_status.from_call(exc.value)) == "requests"

        created = (await stub.CreateCampaign(request(tenant_id))).campaign
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetCampaign(
                pb.GetCampaignRequest(tenant_id=f"{tenant_id}-other", campaign_id=created.campaign_id)
            )
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND

        await stub.CancelCampaign(pb.CancelCampaignRequest(tenant_id=tenant_id, campaign_id=created.campaign_id))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ResumeCampaign(pb.ResumeCampaignRequest(tenant_id=tenant_id, campaign_id=created.campaign_id))
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.ListCampaigns(pb.ListCampaignsRequest(tenant_id=tenant_id, page_token="not-a-token"))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_of(rpc_status.from_call(exc.value)) == "page_token"


# -- the template strategist ----------------------------------------------------------------


async def test_create_without_a_strategy_uses_the_template_strategist(engine, creator, tenant_id):
    req = request(tenant_id)
    req.ClearField("strategy")

    campaign = await creator.create(req)

    assert campaign.strategist == "template"
    assert len(campaign.steps) == len(campaign.strategy.outreach_campaign) >= 1
    assert campaign.steps[0].status == pb.STEP_STATUS_SCHEDULED
    async with engine.connect() as conn:
        rows = (await conn.execute(select(ai_generations).where(ai_generations.c.tenant_id == tenant_id))).all()
    [generation] = rows
    assert (generation.campaign_id, generation.strategist, generation.outcome) == (
        campaign.campaign_id,
        "template",
        "template",
    )
    assert generation.output_json is not None
    assert [t.key for t in schedules(timer_commands(await drain_outbox(engine, tenant_id)))] == [
        f"{campaign.campaign_id}:step"
    ]


# -- placeholders ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("place", "field"),
    [
        ("content", "strategy.outreachCampaign[1].content"),
        ("subject", "strategy.outreachCampaign[1].subject"),
        ("call_to_action", "strategy.outreachCampaign[1].callToAction"),
        ("variant", "strategy.outreachCampaign[1].variants[1].content"),
    ],
)
async def test_an_unknown_placeholder_is_refused_naming_the_field_and_the_known_ones(
    engine, creator, tenant_id, place, field
):
    # {{firstName}} is no fact: it would have gone out as an empty string.
    plan = strategy("Day 0", "Day 3")
    step = plan.outreach_campaign[1]
    if place == "variant":
        step.variants.extend(
            [
                pb.StepVariant(name="a", weight=1, content="Hello {{first_name}}"),
                pb.StepVariant(name="b", weight=1, content="Hello {{firstName}}"),
            ]
        )
    else:
        setattr(step, place, "Hello {{firstName}} at {{company_name}}")
    with pytest.raises(InvalidArgument) as exc:
        await creator.create(request(tenant_id, strategy=plan))
    assert exc.value.field == field
    assert "unknown placeholder {{firstName}}" in str(exc.value)
    assert "{{first_name}}" in str(exc.value) and "{{product_url}}" in str(exc.value)
    assert await count_campaigns(engine, tenant_id) == 0

    # In a batch, the item is refused and the others are created.
    batch = pb.BatchCreateCampaignsRequest(
        tenant_id=tenant_id, requests=[item("c1", strategy=plan), item("c2", strategy=strategy("Day 0"))]
    )
    results = (await creator.batch_create(batch)).results
    assert results[0].error.code == code_pb2.INVALID_ARGUMENT
    assert field_of(results[0].error) == field
    assert results[1].WhichOneof("result") == "campaign"


async def test_every_fact_of_a_request_is_a_known_placeholder(engine, creator, tenant_id):
    every = " ".join(f"{{{{{name}}}}}" for name in templates.FIELDS)
    plan = strategy("Day 0")
    plan.outreach_campaign[0].content = every
    created = await creator.create(request(tenant_id, strategy=plan))
    assert created.campaign_id
