"""CampaignService on real PostgreSQL: batch create, the template strategist, list, pause/resume/
cancel, preview, tenant settings, the suppression check at plan time and the timeline.

The dispatcher and events services the planner asks are the real servicers, served in process
by a gRPC server on an ephemeral port over the same database.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from helpers import (
    ALWAYS,
    BUSINESS_HOURS,
    DAY,
    T0,
    at,
    campaign_creator,
    decisions,
    drain_outbox,
    engagement,
    raw_timer_commands,
    request,
    schedules,
    sent,
    step_rows,
    strategy,
    timer_commands,
    within_jitter,
)
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as dpb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as dpb_grpc
from dripiq.events.v1 import events_service_pb2_grpc as epb_grpc
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import campaign_service_pb2_grpc as pb_grpc
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_common.grpc_server import GrpcServer, Registrar
from dripiq_common.tokens import TokenSigner
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.forwarding import ReplyForwardingSettings
from dripiq_dispatcher.handlers import DispatcherServicer, SuppressionServicer
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.models import outbox as dispatcher_outbox
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.suppressions import Suppressions
from dripiq_dispatcher.tasks import Tasks
from dripiq_events.handlers import EventsServicer
from dripiq_events.queries import EventQuery
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import MAX_BATCH, CampaignCreator
from dripiq_planner.handlers import CampaignServicer
from dripiq_planner.models import ai_generations, campaign_steps, contact_campaigns
from dripiq_planner.owners import Owners
from dripiq_planner.planning import Planner
from dripiq_planner.preview import StrategyPreview
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.tenant_settings import TenantSettingsService

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def campaigns(engine: AsyncEngine, clock: ManualClock) -> CampaignService:
    return CampaignService(engine, clock)


@pytest.fixture
def creator(engine: AsyncEngine, clock: ManualClock) -> CampaignCreator:
    return campaign_creator(engine, clock)


@pytest.fixture
def strategy_preview(engine: AsyncEngine, clock: ManualClock) -> StrategyPreview:
    return StrategyPreview(engine, clock, Planner(engine, TemplateStrategist()))


@pytest.fixture
def tenant_settings(engine: AsyncEngine, clock: ManualClock) -> TenantSettingsService:
    return TenantSettingsService(engine, clock)


def item(contact_id: str, **overrides: Any) -> pb.CreateCampaignRequest:
    """A batch item (tenant left empty) for its own contact."""
    overrides.setdefault(
        "contact", pb.Contact(contact_id=contact_id, email=f"{contact_id}@example.com", first_name=contact_id.title())
    )
    return request(overrides.pop("tenant_id", ""), **overrides)


async def count_campaigns(engine: AsyncEngine, tenant_id: str) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(func.count()).select_from(contact_campaigns).where(contact_campaigns.c.tenant_id == tenant_id)
            )
        ).scalar_one()


def field_of(status) -> str:  # type: ignore[no-untyped-def]
    """The field a google.rpc.Status's BadRequest detail names."""
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    [violation] = bad_request.field_violations
    return violation.field


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def inside_business_hours(moment: datetime) -> bool:
    local = moment.astimezone(NEW_YORK)
    return local.isoweekday() <= 5 and 9 <= local.hour < 17


@asynccontextmanager
async def serve(names: Sequence[str], register: Sequence[Registrar]) -> AsyncIterator[str]:
    server = GrpcServer(address="127.0.0.1:0", service_names=list(names), register=list(register))
    await server.start()
    await server.serving()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)


def owner_services(engine: AsyncEngine, clock: ManualClock, *, events: bool = True) -> tuple[list, list]:
    """The real dispatcher (messages, suppressions) and events query servicers."""
    messages_api = DispatcherServicer(
        Messages(engine), RateLimits(engine, clock), Tasks(engine, clock), ReplyForwardingSettings(engine, clock)
    )
    suppressions_api = SuppressionServicer(Suppressions(engine, clock))
    names = ["dripiq.dispatcher.v1.DispatcherService", "dripiq.dispatcher.v1.SuppressionService"]
    register: list[Registrar] = [
        lambda s: dpb_grpc.add_DispatcherServiceServicer_to_server(messages_api, s),
        lambda s: dpb_grpc.add_SuppressionServiceServicer_to_server(suppressions_api, s),
    ]
    if events:
        events_api = EventsServicer(EventQuery(engine))
        names.append("dripiq.events.v1.EventsService")
        register.append(lambda s: epb_grpc.add_EventsServiceServicer_to_server(events_api, s))
    return names, register


class StubSender:
    """The provider: accepts every mail and names it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, mail: dict[str, Any]) -> str | None:
        self.sent.append(mail)
        return f"x-{uuid.uuid4().hex}"


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
        creator=creator, campaigns=campaigns, preview=strategy_preview, tenant_settings=tenant_settings
    )
    async with (
        serve(
            ["dripiq.planner.v1.CampaignService"],
            [lambda s: pb_grpc.add_CampaignServiceServicer_to_server(servicer, s)],
        ) as address,
        grpc.aio.insecure_channel(address) as channel,
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


# -- list -----------------------------------------------------------------------------------


async def test_list_campaigns_newest_first_filtered_and_paged(engine, creator, campaigns, clock, tenant_id):
    created = []
    for i in range(5):
        clock.advance(timedelta(minutes=1))
        lead = pb.Lead(lead_id="lead-a" if i % 2 == 0 else "lead-b", company_name="Acme")
        created.append((await creator.create(item(f"c{i}", tenant_id=tenant_id, lead=lead))).campaign_id)
    clock.advance(timedelta(minutes=1))
    batch = await creator.batch_create(
        pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=[item(f"b{i}") for i in range(3)])
    )
    same_time = sorted((r.campaign.campaign_id for r in batch.results), reverse=True)
    await campaigns.cancel(tenant_id, created[1], "test")
    await campaigns.pause(tenant_id, created[3], 0)
    # Another tenant's campaign, created last, never shows.
    other = await creator.create(item("c0", tenant_id=f"{tenant_id}-other"))

    newest_first = [*same_time, *reversed(created)]

    async def ids(**fields: Any) -> list[str]:
        page = await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=tenant_id, **fields))
        assert not page.next_page_token
        assert all(not c.HasField("strategy") for c in page.campaigns)
        return [c.campaign_id for c in page.campaigns]

    assert await ids() == newest_first
    assert other.campaign_id not in await ids()
    assert await ids(status=pb.CAMPAIGN_STATUS_CANCELED) == [created[1]]
    assert await ids(status=pb.CAMPAIGN_STATUS_PAUSED) == [created[3]]
    assert await ids(status=pb.CAMPAIGN_STATUS_ACTIVE) == [i for i in newest_first if i not in (created[1], created[3])]
    assert await ids(contact_id="c2") == [created[2]]
    assert await ids(lead_id="lead-b") == [created[3], created[1]]
    assert await ids(lead_id="lead-b", status=pb.CAMPAIGN_STATUS_PAUSED) == [created[3]]
    other_page = await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=f"{tenant_id}-other"))
    assert [c.campaign_id for c in other_page.campaigns] == [other.campaign_id]

    seen, token, pages = [], "", 0
    for _ in range(10):  # bounded: a paging bug must fail, not hang
        page = await campaigns.list_campaigns(
            pb.ListCampaignsRequest(tenant_id=tenant_id, page_size=3, page_token=token)
        )
        seen += [c.campaign_id for c in page.campaigns]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == newest_first
    assert pages == 3

    # Not base64 JSON; an empty list; a list of one; ["yesterday", "m-1"]: the right shape with
    # no time in it (it reached the query and answered INTERNAL).
    for bad in ("garbage!", "W10", "WyJhIl0", "WyJ5ZXN0ZXJkYXkiLCJtLTEiXQ"):
        with pytest.raises(InvalidArgument) as exc:
            await campaigns.list_campaigns(pb.ListCampaignsRequest(tenant_id=tenant_id, page_token=bad))
        assert exc.value.field == "page_token"


# -- pause, resume, cancel ------------------------------------------------------------------


async def test_pause_is_idempotent_and_cancels_the_step_timer(engine, creator, campaigns, tenant_id):
    campaign = await creator.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)

    paused = await campaigns.pause(tenant_id, campaign.campaign_id, 0)
    assert paused.status == pb.CAMPAIGN_STATUS_PAUSED
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert [c.cancel.key for c in commands] == [f"{campaign.campaign_id}:step"]

    again = await campaigns.pause(tenant_id, campaign.campaign_id, 3600)
    assert again.status == pb.CAMPAIGN_STATUS_PAUSED
    assert await drain_outbox(engine, tenant_id) == []
    assert [s.status for s in again.steps] == [s.status for s in paused.steps]

    with pytest.raises(InvalidArgument) as exc:
        await campaigns.pause(tenant_id, campaign.campaign_id, -1)
    assert exc.value.field == "resume_after_seconds"


async def test_resume_reschedules_the_next_step_from_now_inside_the_window(
    engine, creator, campaigns, clock, tenant_id
):
    contact = pb.Contact(contact_id="c-ny", email="ny@example.com", time_zone="America/New_York")
    campaign = await creator.create(request(tenant_id, contact=contact, send_window=BUSINESS_HOURS))
    first_at = at(campaign.steps[0].scheduled_at)
    assert inside_business_hours(first_at)  # Monday 09:00 New York, after T0 (04:00 there)
    await campaigns.pause(tenant_id, campaign.campaign_id, 0)
    await drain_outbox(engine, tenant_id)

    # Monday 18:00 in New York: past the planned time, and past the window.
    clock.advance(timedelta(hours=14))
    resumed = await campaigns.resume(tenant_id, campaign.campaign_id)

    assert resumed.status == pb.CAMPAIGN_STATUS_ACTIVE
    step = resumed.steps[0]
    assert step.status == pb.STEP_STATUS_SCHEDULED
    moved = at(step.scheduled_at)
    assert moved > clock.now() and inside_business_hours(moved)
    local = moved.astimezone(NEW_YORK)
    assert (local.date().isoformat(), local.hour) == ("2030-03-05", 9)
    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert (timer.key, at(timer.fire_at)) == (f"{campaign.campaign_id}:step", moved)
    version = (await step_rows(engine, campaign.campaign_id))[0].schedule_version
    assert timers_pb2.PlannerTimer.FromString(timer.payload).step_due == timers_pb2.StepDue(
        step_index=0, schedule_version=version
    )
    assert version == 2

    # Resuming an active campaign changes nothing.
    await campaigns.resume(tenant_id, campaign.campaign_id)
    assert await drain_outbox(engine, tenant_id) == []


async def test_resume_keeps_a_planned_time_that_is_still_ahead(engine, creator, campaigns, clock, tenant_id):
    campaign = await creator.create(request(tenant_id))
    reactor = Reactor(engine, clock)
    await sent(engine, reactor, clock, tenant_id, campaign.campaign_id)
    planned = (await step_rows(engine, campaign.campaign_id))[1].scheduled_at
    await campaigns.pause(tenant_id, campaign.campaign_id, 0)
    clock.advance(DAY)

    resumed = await campaigns.resume(tenant_id, campaign.campaign_id)

    assert planned <= at(resumed.steps[1].scheduled_at) < planned + timedelta(minutes=15)


async def test_cancel_twice_is_fine_and_a_canceled_campaign_cannot_resume(engine, creator, campaigns, tenant_id):
    campaign = await creator.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)

    canceled = await campaigns.cancel(tenant_id, campaign.campaign_id, "lost interest")
    assert (canceled.status, canceled.cancel_reason) == (pb.CAMPAIGN_STATUS_CANCELED, "lost interest")
    assert [s.status for s in canceled.steps] == [pb.STEP_STATUS_CANCELED] * 2
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert [c.cancel_group.group_key for c in commands] == [f"campaign:{campaign.campaign_id}"]

    again = await campaigns.cancel(tenant_id, campaign.campaign_id, "")
    assert (again.status, again.cancel_reason) == (pb.CAMPAIGN_STATUS_CANCELED, "lost interest")
    assert await drain_outbox(engine, tenant_id) == []

    with pytest.raises(FailedPrecondition):
        await campaigns.resume(tenant_id, campaign.campaign_id)
    with pytest.raises(FailedPrecondition):
        await campaigns.pause(tenant_id, campaign.campaign_id, 0)
    # A new campaign for the same contact and product may start now.
    assert (await creator.create(request(tenant_id))).status == pb.CAMPAIGN_STATUS_ACTIVE


async def test_another_tenants_campaign_is_not_found(engine, creator, campaigns, tenant_id):
    campaign = await creator.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)
    other = f"{tenant_id}-other"

    for call in (
        lambda: campaigns.get(other, campaign.campaign_id),
        lambda: campaigns.pause(other, campaign.campaign_id, 0),
        lambda: campaigns.resume(other, campaign.campaign_id),
        lambda: campaigns.cancel(other, campaign.campaign_id, "no"),
        lambda: campaigns.timeline(other, campaign.campaign_id),
    ):
        with pytest.raises(NotFound):
            await call()

    assert (await campaigns.get(tenant_id, campaign.campaign_id)).status == pb.CAMPAIGN_STATUS_ACTIVE
    assert await drain_outbox(engine, other) == []
    assert await drain_outbox(engine, tenant_id) == []


# -- preview --------------------------------------------------------------------------------


async def test_preview_stores_no_campaign_and_shows_the_schedule(engine, strategy_preview, clock, tenant_id):
    contact = pb.Contact(contact_id="c-ny", email="ny@example.com", time_zone="America/New_York")
    preview = await strategy_preview.preview(
        pb.PreviewStrategyRequest(
            request=request(
                tenant_id, contact=contact, send_window=BUSINESS_HOURS, strategy=strategy("Day 0", "Day 3", "48h")
            )
        )
    )

    assert preview.strategist == "request"
    assert [s.step_index for s in preview.steps] == [0, 1, 2]
    assert [s.relative_delay_seconds for s in preview.steps] == [0, 3 * 86400, 2 * 86400]
    times = [at(s.scheduled_at) for s in preview.steps]
    assert all(inside_business_hours(t) for t in times)
    assert times == sorted(times) and times[0] >= clock.now()
    assert times[1] >= times[0] + 3 * DAY and times[2] >= times[1] + 2 * DAY
    assert len(preview.strategy.outreach_campaign) == 3

    templated = request(tenant_id)
    templated.ClearField("strategy")
    assert (await strategy_preview.preview(pb.PreviewStrategyRequest(request=templated))).strategist == "template"

    assert await count_campaigns(engine, tenant_id) == 0
    async with engine.connect() as conn:
        steps = (await conn.execute(select(func.count()).where(campaign_steps.c.tenant_id == tenant_id))).scalar_one()
    assert steps == 0
    assert await drain_outbox(engine, tenant_id) == []


async def test_preview_with_a_bad_timing_names_the_step(strategy_preview, tenant_id):
    bad = strategy("Day 0", "Day 3", "whenever")
    with pytest.raises(InvalidArgument) as exc:
        await strategy_preview.preview(pb.PreviewStrategyRequest(request=request(tenant_id, strategy=bad)))
    assert exc.value.field == "strategy.outreachCampaign[2].timing"


# -- tenant settings ------------------------------------------------------------------------


async def test_tenant_settings_update_mask_and_default_window(engine, tenant_settings, creator, tenant_id):
    defaults = await tenant_settings.get(tenant_id)
    assert defaults.send_window == BUSINESS_HOURS and not defaults.HasField("update_time")

    window = pb.SendWindow(weekdays=[2, 4], start_hour=10, end_hour=12)
    full = await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, send_window=window, voice="warm", guidelines="no pricing")
        )
    )
    assert (full.send_window, full.voice, full.guidelines) == (window, "warm", "no pricing")
    assert at(full.update_time) == T0

    only_voice = await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, send_window=ALWAYS, voice="brief", guidelines="other"),
            update_mask=field_mask_pb2.FieldMask(paths=["voice"]),
        )
    )
    assert (only_voice.send_window, only_voice.voice, only_voice.guidelines) == (window, "brief", "no pricing")
    assert await tenant_settings.get(tenant_id) == only_voice

    # A request without a window gets the tenant's; one with a window keeps its own.
    without = request(tenant_id)
    without.ClearField("send_window")
    campaign = await creator.create(without)
    assert campaign.send_window == window
    first = at(campaign.steps[0].scheduled_at)
    assert first.isoweekday() in (2, 4) and 10 <= first.hour < 12  # UTC contact
    own = await creator.create(item("c-own", tenant_id=tenant_id, send_window=ALWAYS))
    assert own.send_window == ALWAYS


@pytest.mark.parametrize(
    ("settings", "mask", "field"),
    [
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[1], start_hour=18, end_hour=9)), [], "start_hour"),
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[1], start_hour=9, end_hour=25)), [], "start_hour"),
        (pb.TenantSettings(send_window=pb.SendWindow(weekdays=[8], start_hour=9, end_hour=17)), [], "weekdays"),
        (pb.TenantSettings(voice="x"), ["tone"], "update_mask"),
    ],
)
async def test_bad_tenant_settings_name_the_field(tenant_settings, tenant_id, settings, mask, field):
    settings.tenant_id = tenant_id
    with pytest.raises(InvalidArgument) as exc:
        await tenant_settings.update(
            pb.UpdateTenantSettingsRequest(settings=settings, update_mask=field_mask_pb2.FieldMask(paths=mask))
        )
    expected = field if field == "update_mask" else f"settings.send_window.{field}"
    assert exc.value.field == expected
    assert not (await tenant_settings.get(tenant_id)).HasField("update_time")


# -- suppressed contacts --------------------------------------------------------------------


async def test_suppressed_contacts_are_refused_at_plan_time(engine, clock, tenant_id):
    names, register = owner_services(engine, clock, events=False)
    async with serve(names, register) as address, grpc.aio.insecure_channel(address) as channel:
        await dpb_grpc.SuppressionServiceStub(channel).AddSuppression(
            dpb.AddSuppressionRequest(tenant_id=tenant_id, address="Ada@Example.com", reason="unsubscribe")
        )
        owners = Owners(dispatcher_address=address, events_address=f"127.0.0.1:{unused_port()}", timeout_seconds=5)
        creator = campaign_creator(engine, clock, owners)
        try:
            with pytest.raises(FailedPrecondition) as exc:
                await creator.create(request(tenant_id))
            assert "suppressed" in str(exc.value)
            assert await count_campaigns(engine, tenant_id) == 0
            assert await drain_outbox(engine, tenant_id) == []

            # In a batch the suppressed item fails alone; an address the tenant has not
            # suppressed (even another tenant's suppressed one) goes ahead.
            response = await creator.batch_create(
                pb.BatchCreateCampaignsRequest(
                    tenant_id=tenant_id,
                    requests=[
                        item("c1", contact=pb.Contact(contact_id="c1", email="ADA@example.com")),
                        item("c2"),
                    ],
                )
            )
            assert response.results[0].error.code == code_pb2.FAILED_PRECONDITION
            assert "suppressed" in response.results[0].error.message
            assert response.results[1].campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
            other = await creator.create(request(f"{tenant_id}-other"))
            assert other.status == pb.CAMPAIGN_STATUS_ACTIVE
        finally:
            await owners.close()


async def test_create_goes_ahead_when_the_dispatcher_does_not_answer(engine, clock, tenant_id):
    nobody = f"127.0.0.1:{unused_port()}"
    owners = Owners(dispatcher_address=nobody, events_address=nobody, timeout_seconds=2)
    creator = campaign_creator(engine, clock, owners)
    try:
        campaign = await creator.create(request(tenant_id))
    finally:
        await owners.close()
    assert campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert len(schedules(timer_commands(await drain_outbox(engine, tenant_id)))) == 1


# -- timeline -------------------------------------------------------------------------------


async def _sent_through_the_dispatcher(engine, clock, tenant_id, reactor) -> pb.Campaign:  # type: ignore[no-untyped-def]
    """A campaign whose step 0 went out through the real dispatcher (to a stub provider) and
    was opened two hours later."""
    identities = SenderIdentities(engine, clock)
    identity = await identities.create(
        dpb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sales@acme.test", from_name="Acme")
    )
    await identities.verify(tenant_id, identity.sender_identity_id)
    campaign = await campaign_creator(engine, clock).create(
        request(tenant_id, sender_identity_id=identity.sender_identity_id)
    )
    await drain_outbox(engine, tenant_id)

    step = (await step_rows(engine, campaign.campaign_id))[0]
    await reactor.on_timer(
        timers_pb2.PlannerTimer(
            tenant_id=tenant_id,
            campaign_id=campaign.campaign_id,
            step_due=timers_pb2.StepDue(step_index=0, schedule_version=step.schedule_version),
        ).SerializeToString()
    )
    [(_, send)] = [r for r in await drain_outbox(engine, tenant_id) if r[0].startswith("dripiq.dispatcher.send.")]
    dispatcher = Sends(
        engine,
        clock,
        StubSender(),
        TokenSigner(b"planner-api-test-secret"),
        campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/"),
        failures.RetryPolicy(),
    )
    clock.advance(timedelta(minutes=1))
    await dispatcher.handle_send(send)
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(dispatcher_outbox.c.id, dispatcher_outbox.c.payload).where(
                    dispatcher_outbox.c.subject.like(f"%.{tenant_id}%")
                )
            )
        ).all()
        await conn.execute(delete(dispatcher_outbox).where(dispatcher_outbox.c.id.in_([r.id for r in rows])))
    [outcome] = [r.payload for r in rows]
    await reactor.on_outcome(outcome)

    clock.advance(timedelta(hours=2))
    message_id = (await step_rows(engine, campaign.campaign_id))[0].message_id
    await reactor.on_engagement(engagement(tenant_id, campaign.campaign_id, message_id, 0, "open", event_id="o-1"))
    await drain_outbox(engine, tenant_id)
    return campaign


async def test_timeline_merges_steps_messages_and_decisions_in_time_order(engine, clock, tenant_id):
    names, register = owner_services(engine, clock)
    async with serve(names, register) as address:
        owners = Owners(dispatcher_address=address, events_address=address, timeout_seconds=5)
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            timeline = await campaigns.timeline(tenant_id, campaign.campaign_id)
        finally:
            await owners.close()

    assert list(timeline.unavailable) == []
    assert timeline.campaign.campaign_id == campaign.campaign_id
    times = [at(e.time) for e in timeline.entries]
    assert times == sorted(times)
    kinds = [e.kind for e in timeline.entries]
    assert kinds.count("step_scheduled") == 2 and kinds.count("decision") == 1
    [decision] = [e for e in timeline.entries if e.kind == "decision"]
    assert "open" in decision.detail and decision.step_index == 0
    assert decision.message_id == timeline.campaign.steps[0].message_id
    [message] = [e for e in timeline.entries if e.kind.startswith("message")]
    assert message.message_id == decision.message_id


async def _timeline(engine, clock, tenant_id) -> tuple[pb.GetCampaignTimelineResponse, datetime]:  # type: ignore[no-untyped-def]
    names, register = owner_services(engine, clock)
    async with serve(names, register) as address:
        owners = Owners(dispatcher_address=address, events_address=address, timeout_seconds=5)
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            opened_at = clock.now()
            return await campaigns.timeline(tenant_id, campaign.campaign_id), opened_at
        finally:
            await owners.close()


async def test_timeline_decision_times_come_from_the_planner_clock(engine, clock, tenant_id):
    """Every planner time comes from its clock (house rule 7), a decision's too, so the timeline
    tells the story in order: step 0 planned, sent, opened (decision), step 1 planned."""
    timeline, opened_at = await _timeline(engine, clock, tenant_id)

    [row] = await decisions(engine, tenant_id, timeline.campaign.campaign_id)
    assert row.created_at == opened_at
    entries = [(e.kind, e.step_index) for e in timeline.entries]
    assert [e for e in entries if not e[0].startswith("message")] == [
        ("step_scheduled", 0),
        ("decision", 0),
        ("step_scheduled", 1),
    ]
    [decision] = [e for e in timeline.entries if e.kind == "decision"]
    assert at(decision.time) == opened_at
    [message] = [i for i, e in enumerate(entries) if e[0].startswith("message")]
    assert entries[message - 1] == ("step_scheduled", 0) and entries[message + 1] == ("decision", 0)


async def test_timeline_message_entries_use_the_kinds_the_contract_names(engine, clock, tenant_id):
    """campaign_service.proto, TimelineEntry.kind: "step_scheduled", "message_sent",
    "message_failed", "event", "decision"."""
    timeline, _ = await _timeline(engine, clock, tenant_id)

    kinds = [e.kind for e in timeline.entries]
    assert set(kinds) <= {"step_scheduled", "message_sent", "message_failed", "event", "decision"}, kinds
    assert kinds.count("message_sent") == 1


async def test_timeline_without_the_events_service_says_so(engine, clock, tenant_id):
    names, register = owner_services(engine, clock, events=False)
    async with serve(names, register) as address:
        owners = Owners(dispatcher_address=address, events_address=f"127.0.0.1:{unused_port()}", timeout_seconds=2)
        campaigns = CampaignService(engine, clock, owners=owners)
        try:
            campaign = await _sent_through_the_dispatcher(engine, clock, tenant_id, Reactor(engine, clock))
            timeline = await campaigns.timeline(tenant_id, campaign.campaign_id)
        finally:
            await owners.close()

    assert list(timeline.unavailable) == ["events"]
    kinds = [e.kind for e in timeline.entries]
    assert kinds.count("step_scheduled") == 2 and kinds.count("decision") == 1
    assert sum(k.startswith("message") for k in kinds) == 1
    times = [at(e.time) for e in timeline.entries]
    assert times == sorted(times)
