"""The one GetTenantStats a tenant calls: the planner answers its planning backlog and campaigns by
status, and, for a range of UTC days, the engagement rows it asks of the events service.

The planner and the events service are their real servicers, each on its own in-process gRPC
server with TLS (the tenant with a token on the planner's public port, the planner with its
certificate on the events service's internal port), over the session's PostgreSQL. Engagement is
recorded as the events service records it: the dispatcher's SENT outcomes through its ingest.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from helpers import request
from owner_servers import events_server, planner_server, unused_port
from secured import caller_channel, pki, service_channel

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as epb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_events.ingest import EventIngest
from dripiq_planner.ai_budget import BudgetLimits
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.handlers import CampaignServicer
from dripiq_planner.owners import Owners
from dripiq_planner.planning import Planner
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.stats import TenantStats
from dripiq_planner.step_edits import StepEditor
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.tenant_settings import TenantSettingsService

MONDAY, TUESDAY = date(2030, 3, 4), date(2030, 3, 5)
D = epb.StatsDimension


def field_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    return bad_request.field_violations[0].field


def engagement(tenant_id: str, *group_by: int, **fields) -> pb.GetTenantStatsRequest:  # type: ignore[no-untyped-def]
    """A request for engagement on Monday and Tuesday; `fields` override any field."""
    asked = {"start_day": MONDAY.isoformat(), "end_day": TUESDAY.isoformat(), "group_by": group_by, **fields}
    return pb.GetTenantStatsRequest(tenant_id=tenant_id, **asked)


async def record_sent(engine, tenant_id: str, *, step: int, day: date) -> None:  # type: ignore[no-untyped-def]
    """A SENT outcome as the dispatcher publishes it, kept and counted by the events ingest."""
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=tenant_id,
        message_id=str(uuid.uuid4()),
        campaign_id="camp-1",
        step_index=step,
        contact_id="contact-1",
        channel="email",
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider_message_id=f"x-{uuid.uuid4().hex}",
        to_email="ada@example.com",
        subject="Hello",
        product_id="product-1",
        sender_identity_id="sender-1",
        strategist="template",
    )
    outcome.occurred_at.FromDatetime(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    ingest = EventIngest(engine, ManualClock(datetime(2030, 3, 6, tzinfo=UTC)), TokenSigner(b"stats-test-secret"))
    assert await ingest.record_outcome(outcome.SerializeToString())


@asynccontextmanager
async def planner(  # type: ignore[no-untyped-def]
    engine, clock, tenant_id: str, events_address: str, *, deadline_seconds: float = 5
) -> AsyncIterator[pb_grpc.CampaignServiceStub]:
    """The planner's servicer asking the events service at `events_address` as itself, called
    by a user of `tenant_id` with a token for that tenant only."""
    owners = Owners(
        dispatcher_address=f"127.0.0.1:{unused_port()}",
        events_address=events_address,
        timeout_seconds=deadline_seconds,
        channel=service_channel,
    )
    campaigns = CampaignService(engine, clock, owners=owners)
    servicer = CampaignServicer(
        creator=CampaignCreator(engine, clock, Planner(engine, TemplateStrategist())),
        campaigns=campaigns,
        preview=StrategyPreview(engine, clock, Planner(engine, TemplateStrategist())),
        tenant_settings=TenantSettingsService(engine, clock),
        approval=CampaignApproval(engine, clock, campaigns),
        step_editor=StepEditor(engine, clock, campaigns),
        stats=TenantStats(engine, clock, BudgetLimits(calls=10, tokens=1000), 8, owners),
    )
    token = pki().token(f"user@{tenant_id}", tenants=[tenant_id])
    try:
        async with (
            planner_server(servicer) as served,
            caller_channel(served.public, token=token) as channel,
        ):
            yield pb_grpc.CampaignServiceStub(channel)
    finally:
        await owners.close()


async def a_backlog(stub: pb_grpc.CampaignServiceStub, tenant_id: str) -> None:
    """Two active campaigns and one waiting to be planned (no strategy in its request)."""
    for contact in ("c-1", "c-2"):
        await stub.CreateCampaign(request(tenant_id, contact=pb.Contact(contact_id=contact, email=f"{contact}@x.test")))
    waiting = request(tenant_id, contact=pb.Contact(contact_id="c-3", email="c-3@x.test"))
    waiting.ClearField("strategy")
    await stub.CreateCampaign(waiting)


async def test_one_call_answers_planning_statuses_and_engagement_by_step(engine, clock, tenant_id):
    for step, day in [(0, MONDAY), (0, MONDAY), (0, TUESDAY), (1, TUESDAY)]:
        await record_sent(engine, tenant_id, step=step, day=day)
    # Another tenant's messages are never counted for this one.
    await record_sent(engine, f"{tenant_id}-other", step=0, day=MONDAY)

    async with events_server(engine) as events, planner(engine, clock, tenant_id, events) as stub:
        await a_backlog(stub, tenant_id)
        answer = await stub.GetTenantStats(engagement(tenant_id, D.STATS_DIMENSION_STEP_INDEX))
        plain = await stub.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=tenant_id))
        paged = await stub.GetTenantStats(engagement(tenant_id, D.STATS_DIMENSION_STEP_INDEX, page_size=1))
        rest = await stub.GetTenantStats(
            engagement(
                tenant_id, D.STATS_DIMENSION_STEP_INDEX, page_size=1, page_token=paged.engagement.next_page_token
            )
        )
        filtered = await stub.GetTenantStats(
            engagement(tenant_id, D.STATS_DIMENSION_DAY, filter=epb.TenantStatsFilter(step_indexes=[0]))
        )

    assert answer.tenant_id == tenant_id
    assert answer.planning.waiting == 1
    assert [(s.status, s.count) for s in answer.campaigns_by_status] == [
        (pb.CAMPAIGN_STATUS_ACTIVE, 2),
        (pb.CAMPAIGN_STATUS_PLANNING, 1),
    ]
    assert [(r.step_index, r.counts.sent) for r in answer.engagement.rows] == [(0, 3), (1, 1)]
    assert all(not r.day and not r.product_id for r in answer.engagement.rows)
    assert answer.engagement.next_page_token == ""
    # Without a range: the planning figures, and no engagement (not an empty one).
    assert not plain.HasField("engagement")
    assert plain.planning == answer.planning
    assert list(plain.campaigns_by_status) == list(answer.campaigns_by_status)
    # Paging and filters are the events service's, passed as asked.
    assert [r.step_index for r in paged.engagement.rows] == [0] and paged.engagement.next_page_token
    assert [r.step_index for r in rest.engagement.rows] == [1] and not rest.engagement.next_page_token
    assert [(r.day, r.counts.sent) for r in filtered.engagement.rows] == [
        (MONDAY.isoformat(), 2),
        (TUESDAY.isoformat(), 1),
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"group_by": [D.STATS_DIMENSION_UNSPECIFIED]}, "group_by"),
        ({"group_by": [D.STATS_DIMENSION_DAY, D.STATS_DIMENSION_DAY]}, "group_by"),
        ({"end_day": "2030-03-01"}, "end_day"),
        ({"start_day": "March 4"}, "start_day"),
        ({"start_day": ""}, "start_day"),
        ({"page_token": "not-a-token"}, "page_token"),
    ],
)
async def test_bad_engagement_fields_are_invalid_argument_naming_the_field(engine, clock, tenant_id, fields, field):
    async with events_server(engine) as events, planner(engine, clock, tenant_id, events) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetTenantStats(engagement(tenant_id, D.STATS_DIMENSION_STEP_INDEX, **fields))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc.value) == field


@pytest.mark.parametrize(
    "fields",
    [
        {"group_by": [D.STATS_DIMENSION_STEP_INDEX]},
        {"filter": epb.TenantStatsFilter(channels=["email"])},
        {"page_size": 10},
    ],
)
async def test_grouping_or_paging_without_a_range_names_start_day_even_with_events_down(
    engine, clock, tenant_id, fields
):
    async with planner(engine, clock, tenant_id, f"127.0.0.1:{unused_port()}") as stub:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=tenant_id, **fields))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_of(exc.value) == "start_day"


async def test_events_down_is_unavailable_when_engagement_is_asked_and_the_plain_call_answers(engine, clock, tenant_id):
    # An address the events service served at a moment ago: nothing listens there now.
    async with events_server(engine) as events:
        pass
    async with planner(engine, clock, tenant_id, events) as stub:
        await a_backlog(stub, tenant_id)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetTenantStats(engagement(tenant_id, D.STATS_DIMENSION_STEP_INDEX))
        plain = await stub.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=tenant_id))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "events service" in (exc.value.details() or "")
    assert plain.planning.waiting == 1 and not plain.HasField("engagement")


async def test_a_hung_events_service_is_unavailable_not_an_empty_engagement(engine, clock, tenant_id):
    # A port that takes connections and never answers (its TLS handshake never starts): the
    # planner's deadline ends the wait.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        address = f"127.0.0.1:{hung.getsockname()[1]}"
        async with planner(engine, clock, tenant_id, address, deadline_seconds=0.5) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.GetTenantStats(engagement(tenant_id))
            plain = await stub.GetTenantStats(pb.GetTenantStatsRequest(tenant_id=tenant_id))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "DEADLINE_EXCEEDED" in (exc.value.details() or "")
    assert plain.tenant_id == tenant_id and not plain.HasField("engagement")


async def test_a_tenant_token_cannot_ask_for_another_tenants_engagement(engine, clock, tenant_id):
    async with events_server(engine) as events, planner(engine, clock, tenant_id, events) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.GetTenantStats(engagement(f"{tenant_id}-other"))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
