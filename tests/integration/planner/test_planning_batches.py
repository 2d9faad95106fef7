"""Planning in batches, on real PostgreSQL and NATS, through the real `openai` client against
the fake OpenAI: a batch planned and stored together, a worker killed mid-batch replanning only
what it had not acked, every model request asked again kept in ai_generations, a tenant
flooding the queue not keeping another's campaigns waiting, and what pausing, resuming,
canceling and approving a campaign still planning do."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import drain_outbox, openai_strategist, schedules, timer_commands
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_planning_worker import (
    PLENTY,
    TIMERS,
    all_active,
    fake,
    planner,
    publish_outbox,
    spec_for,
    statuses,
    unplanned,
)
from waiting import eventually

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import facts_pb2
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_common.bus.worker import PullWorker
from dripiq_common.errors import FailedPrecondition
from dripiq_devtools.fake_openai import SERVER_ERROR, VALID, FakeOpenAI
from dripiq_planner.ai_budget import AiBudget
from dripiq_planner.approval import CampaignApproval
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import ai_generations, campaign_steps
from dripiq_planner.planning import Planner
from dripiq_planner.planning_worker import Claim, PlanningWorker
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.tenant_settings import TenantSettingsService

__all__ = ["fake", "planner"]  # fixtures shared with test_planning_worker


@asynccontextmanager
async def batches(
    worker: PlanningWorker, js: JetStreamContext, nc: Any, *, size: int, in_flight: int = 1
) -> AsyncIterator[PullWorker]:
    pull = PullWorker(js, nc, worker.spec, worker.handle_batch, batch_size=size, batches_in_flight=in_flight)
    task = asyncio.create_task(pull.run())
    try:
        yield pull
    finally:
        pull.stop()
        await asyncio.wait_for(task, timeout=10)
        await js.delete_consumer(Streams.PLANNER_PLANNING.name, worker.spec.durable)


async def create(engine: AsyncEngine, clock: Any, planner: Planner, tenant_id: str, n: int) -> list[str]:
    """`n` campaigns without strategies, for contacts no other call used."""
    items = unplanned(n)
    for one in items:
        one.contact.contact_id += f"-{uuid.uuid4().hex[:6]}"
    answer = await CampaignCreator(engine, clock, planner).batch_create(
        pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=items)
    )
    assert [r.WhichOneof("result") for r in answer.results] == ["campaign"] * n
    return [r.campaign.campaign_id for r in answer.results]


async def audit(engine: AsyncEngine, tenant_id: str) -> list[Any]:
    async with engine.connect() as conn:
        query = select(ai_generations).where(ai_generations.c.tenant_id == tenant_id).order_by(ai_generations.c.id)
        return list((await conn.execute(query)).all())


async def step_counts(engine: AsyncEngine, ids: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        query = (
            select(campaign_steps.c.campaign_id, func.count())
            .where(campaign_steps.c.campaign_id.in_(ids))
            .group_by(campaign_steps.c.campaign_id)
        )
        return {cid: int(n) for cid, n in (await conn.execute(query)).all()}


def first_timer_keys(rows: list[tuple[str, bytes]]) -> list[str]:
    return sorted(t.key for t in schedules(timer_commands(rows)))


async def outbox_rows(engine: AsyncEngine, tenant_id: str) -> list[tuple[str, bytes]]:
    """Everything of the tenant's outbox not yet read: what publish_outbox kept aside, then the rest."""
    return TIMERS.pop(tenant_id, []) + await drain_outbox(engine, tenant_id)


def status_facts(rows: list[tuple[str, bytes]], tenant_id: str) -> list[facts_pb2.CampaignStatusChanged]:
    subject = Subjects.campaign_status(tenant_id)
    return [facts_pb2.CampaignStatusChanged.FromString(p) for s, p in rows if s == subject]


# -- the template strategist: a batch planned at once and stored together ------------------------


async def test_a_template_batch_is_planned_and_stored_together_with_one_first_timer_each(
    engine, clock, tenant_id, nats_conn, js
):
    planner = Planner(engine, TemplateStrategist())
    ids = await create(engine, clock, planner, tenant_id, 60)
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))
    campaigns = CampaignService(engine, clock)

    async with batches(worker, js, nats_conn, size=25, in_flight=2):
        planned = await eventually(lambda: all_active(engine, js, campaigns, tenant_id, ids), "all planned", seconds=30)

    assert {(c.strategist, c.strategist_reason.split(":")[0]) for c in planned} == {("template", "no_model")}
    rows = await outbox_rows(engine, tenant_id)
    assert first_timer_keys(rows) == sorted(f"{i}:step" for i in ids)
    # One timer command per tenant and stored batch, not one per campaign.
    assert len([s for s, _ in rows if s == Subjects.scheduler_command(tenant_id)]) <= 60 // 25 + 2
    assert [g.outcome for g in await audit(engine, tenant_id)] == ["template"] * 60


async def test_a_worker_killed_mid_batch_replans_only_what_it_had_not_acked(engine, clock, tenant_id, nats_conn, js):
    planner = Planner(engine, TemplateStrategist())
    ids = await create(engine, clock, planner, tenant_id, 10)
    await publish_outbox(engine, js, tenant_id)
    spec = spec_for(tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec)

    # A worker fetches ten, plans and stores four and acks them, plans and stores three more, and
    # dies before acking those or touching the last three.
    await js.add_consumer(Streams.PLANNER_PLANNING.name, spec.config())
    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=Streams.PLANNER_PLANNING.name)
    msgs = await sub.fetch(10, timeout=5)
    assert len(msgs) == 10
    assert await worker.handle_batch(msgs[:4]) == [None] * 4
    for msg in msgs[:4]:
        await msg.ack_sync()
    assert await worker.handle_batch(msgs[4:7]) == [None] * 3
    await sub.unsubscribe()

    campaigns = CampaignService(engine, clock)
    async with batches(worker, js, nats_conn, size=10):
        await eventually(lambda: all_active(engine, js, campaigns, tenant_id, ids), "all planned", seconds=30)
        # The six redelivered are acked: the three stored before are skipped, not planned again.
        info = await eventually(
            lambda: _settled(js, spec.durable),
            "the redelivered messages acked",
            seconds=int(spec.ack_wait_seconds) + 20,
        )
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert [g.outcome for g in await audit(engine, tenant_id)] == ["template"] * 10
    stored = await step_counts(engine, ids)
    assert stored == {i: len((await campaigns.get(tenant_id, i)).steps) for i in ids}
    assert all(n > 0 for n in stored.values())
    assert first_timer_keys(await outbox_rows(engine, tenant_id)) == sorted(f"{i}:step" for i in ids)


async def _settled(js: JetStreamContext, durable: str) -> Any:
    info = await js.consumer_info(Streams.PLANNER_PLANNING.name, durable)
    return info if info.num_ack_pending == 0 and info.num_pending == 0 else None


# -- the model: side by side under the tenant's concurrency, every request audited ----------------


async def test_a_model_batch_plans_side_by_side_within_the_tenants_concurrency(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    fake.latency_seconds = 0.2
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, planning_concurrency=3),
            update_mask=FieldMask(paths=["planning_concurrency"]),
        )
    )
    ids = await create(engine, clock, planner, tenant_id, 12)
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id), defer_seconds=0.05)
    campaigns = CampaignService(engine, clock)

    async with batches(worker, js, nats_conn, size=4, in_flight=2):
        planned = await eventually(lambda: all_active(engine, js, campaigns, tenant_id, ids), "all twelve", seconds=60)

    assert {c.strategist for c in planned} == {"openai"}
    assert 2 <= fake.max_in_flight <= 3
    assert len(fake.requests) == 12


@pytest.fixture
async def retrying(engine, clock, fake) -> AsyncIterator[Planner]:  # type: ignore[no-untyped-def]
    """A planner whose strategist asks the model again twice itself, as the service's does."""
    strategist = openai_strategist(fake.url, budget=AiBudget(engine, clock), retries=2)
    yield Planner(engine, strategist, ai_budget=PLENTY)
    await strategist.aclose()


async def test_every_request_asked_again_is_audited_with_its_error(
    engine, clock, tenant_id, retrying, fake: FakeOpenAI, nats_conn, js
):
    # Two server errors the strategist asks again after, then an answer; then a campaign whose
    # model keeps failing: three requests, its delivery retried by the queue, all audited.
    fake.queue(SERVER_ERROR, SERVER_ERROR, VALID)
    [first] = await create(engine, clock, retrying, tenant_id, 1)
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, retrying, spec_for(tenant_id, max_deliver=2))
    campaigns = CampaignService(engine, clock)
    async with batches(worker, js, nats_conn, size=1):
        await eventually(lambda: all_active(engine, js, campaigns, tenant_id, [first]), "planned", seconds=30)

        fake.default_behaviour = SERVER_ERROR
        [second] = await create(engine, clock, retrying, tenant_id, 1)
        await publish_outbox(engine, js, tenant_id)
        [late] = await eventually(
            lambda: all_active(engine, js, campaigns, tenant_id, [second]), "planned on its last delivery", seconds=60
        )

    rows = await audit(engine, tenant_id)
    mine = [(g.outcome, g.error.split(":")[0]) for g in rows if g.campaign_id == first]
    assert mine == [("retried", "InternalServerError"), ("retried", "InternalServerError"), ("ok", "")]
    theirs = [g.outcome for g in rows if g.campaign_id == second]
    # First delivery: three requests, none answered, the message retried; last delivery: three
    # more, then the template.
    assert theirs == ["retried"] * 3 + ["retried", "retried", "failed", "fallback"]
    assert all("InternalServerError" in g.error for g in rows if g.campaign_id == second and g.outcome != "fallback")
    assert len(fake.requests) == 3 + 6
    assert late.strategist == "template" and late.strategist_reason.startswith("model_error: InternalServerError")


# -- who is served first -------------------------------------------------------------------------


async def test_a_tenant_flooding_the_queue_does_not_keep_another_waiting(engine, clock, planner, fake, nats_conn, js):
    """Tenant A queues 40, then B 3, behind them. A may plan 2 at once (B the default 8): the worker plans what A
    may and puts the rest of A's messages back at the end, so B's are reached after one pass
    over A's, while most of A's still wait (none of the put-back ones has been relayed yet)."""
    flood, few = f"flood-{uuid.uuid4().hex[:8]}", f"few-{uuid.uuid4().hex[:8]}"
    fake.latency_seconds = 0.05
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=flood, planning_concurrency=2),
            update_mask=FieldMask(paths=["planning_concurrency"]),
        )
    )
    flood_ids = await create(engine, clock, planner, flood, 40)
    few_ids = await create(engine, clock, planner, few, 3)
    # In stream order: every one of A's before any of B's.
    assert await publish_outbox(engine, js, flood) == 40
    assert await publish_outbox(engine, js, few) == 3
    spec = replace(spec_for(flood), durable=f"planning-{uuid.uuid4().hex[:8]}")
    config = spec.config()
    config.filter_subject = None
    config.filter_subjects = [Subjects.planner_plan(flood), Subjects.planner_plan(few)]
    await js.add_consumer(Streams.PLANNER_PLANNING.name, config)
    worker = PlanningWorker(engine, clock, planner, spec, defer_seconds=0)
    campaigns = CampaignService(engine, clock)

    async def few_planned() -> list[pb.Campaign] | None:
        got = await statuses(campaigns, few, few_ids)
        return got if all(c.status == pb.CAMPAIGN_STATUS_ACTIVE for c in got) else None

    async with batches(worker, js, nats_conn, size=4):
        await eventually(few_planned, "the small tenant's three planned", seconds=60)
        flood_planned = [
            c for c in await statuses(campaigns, flood, flood_ids) if c.status == pb.CAMPAIGN_STATUS_ACTIVE
        ]
        # A's put-back messages wait in the outbox until relayed: only what it could plan in one
        # pass (2 of each batch of 4) was planned before B's.
        assert len(flood_planned) <= 20
        await eventually(lambda: all_active(engine, js, campaigns, flood, flood_ids), "the flood planned", seconds=120)


# -- pausing, resuming, canceling and approving a campaign still planning -----------------------


async def test_a_campaign_paused_while_planning_is_planned_and_stays_paused_until_resumed(
    engine, clock, tenant_id, planner, nats_conn, js
):
    [cid] = await create(engine, clock, planner, tenant_id, 1)
    campaigns = CampaignService(engine, clock)
    paused = await campaigns.pause(tenant_id, cid, 0)
    assert paused.status == pb.CAMPAIGN_STATUS_PAUSED and not paused.steps
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))

    async def planned_paused() -> pb.Campaign | None:
        got = await campaigns.get(tenant_id, cid)
        return got if got.steps else None

    async with batches(worker, js, nats_conn, size=5):
        got = await eventually(planned_paused, "planned while paused", seconds=30)

    assert got.status == pb.CAMPAIGN_STATUS_PAUSED and got.strategist == "openai"
    assert all(s.status == pb.STEP_STATUS_PENDING and not s.HasField("scheduled_at") for s in got.steps)
    rows = await outbox_rows(engine, tenant_id)
    assert first_timer_keys(rows) == []
    # The pause, then the planned campaign's status (still paused) at the next version.
    facts = status_facts(rows, tenant_id)
    assert [(f.status, f.version) for f in facts] == [("paused", 1), ("paused", 2)]

    resumed = await campaigns.resume(tenant_id, cid)
    assert resumed.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert resumed.steps[0].status == pb.STEP_STATUS_SCHEDULED
    rows = await outbox_rows(engine, tenant_id)
    assert first_timer_keys(rows) == [f"{cid}:step"]
    assert [(f.status, f.version) for f in status_facts(rows, tenant_id)] == [("active", 3)]


async def test_a_campaign_resumed_before_its_strategy_came_starts_when_planned(
    engine, clock, tenant_id, planner, nats_conn, js
):
    [cid] = await create(engine, clock, planner, tenant_id, 1)
    campaigns = CampaignService(engine, clock)
    await campaigns.pause(tenant_id, cid, 0)
    assert (await campaigns.resume(tenant_id, cid)).status == pb.CAMPAIGN_STATUS_PLANNING
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))

    async with batches(worker, js, nats_conn, size=5):
        await eventually(lambda: all_active(engine, js, campaigns, tenant_id, [cid]), "planned", seconds=30)

    # The dispatcher hears "paused", then "planning", then "active" from the worker, each at a
    # higher version: its copy ends active, and the first step's timer is armed.
    rows = await outbox_rows(engine, tenant_id)
    assert [(f.status, f.version) for f in status_facts(rows, tenant_id)] == [
        ("paused", 1),
        ("planning", 2),
        ("active", 3),
    ]
    assert first_timer_keys(rows) == [f"{cid}:step"]


async def test_a_pause_with_a_resume_time_resumes_into_planning_when_not_planned_yet(engine, clock, tenant_id, planner):
    [cid] = await create(engine, clock, planner, tenant_id, 1)
    campaigns = CampaignService(engine, clock)
    await drain_outbox(engine, tenant_id)
    await campaigns.pause(tenant_id, cid, 3600)

    [resume] = [t for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))) if t.kind == "resume"]
    assert resume.key == f"{cid}:resume"
    # The resume timer fires before any worker planned it: the campaign goes back to planning,
    # not to an active campaign without steps.
    clock.advance(timedelta(hours=1))
    await Reactor(engine, clock).on_timers([resume.payload])
    assert (await campaigns.get(tenant_id, cid)).status == pb.CAMPAIGN_STATUS_PLANNING


async def test_a_campaign_canceled_while_its_plan_is_under_way_is_not_stored(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    [cid] = await create(engine, clock, planner, tenant_id, 1)
    campaigns = CampaignService(engine, clock)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))
    claim, row = await worker.claim(tenant_id, cid)
    assert claim is Claim.TAKEN
    [draft] = await planner.plan_many([row], last_tries=set())
    canceled = await campaigns.cancel(tenant_id, cid, "wrong list")

    assert await worker.store_many([draft]) == []
    got = await campaigns.get(tenant_id, cid)
    assert got.status == pb.CAMPAIGN_STATUS_CANCELED and canceled.status == got.status and not got.steps
    # The model was asked: the call is audited even though nothing was stored.
    assert [g.outcome for g in await audit(engine, tenant_id)] == ["ok"]
    assert first_timer_keys(await drain_outbox(engine, tenant_id)) == []


async def test_a_campaign_still_planning_cannot_be_approved_and_becomes_a_draft_when_planned(
    engine, clock, tenant_id, planner, nats_conn, js
):
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, require_approval=True),
            update_mask=FieldMask(paths=["require_approval"]),
        )
    )
    ids = await create(engine, clock, planner, tenant_id, 2)
    campaigns = CampaignService(engine, clock)
    approval = CampaignApproval(engine, clock, campaigns)
    # There is nothing to approve before the copy exists.
    with pytest.raises(FailedPrecondition, match="planning"):
        await approval.approve(tenant_id, ids[0], actor="ops@example.com")
    bulk = await approval.batch_approve(pb.BatchApproveCampaignsRequest(tenant_id=tenant_id), actor="ops@example.com")
    assert (bulk.approved_count, bulk.more) == (0, False)
    # Paused while planning, in a tenant that requires approval: a draft, as the other.
    await campaigns.pause(tenant_id, ids[1], 0)
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))

    async def drafts() -> list[pb.Campaign] | None:
        got = await statuses(campaigns, tenant_id, ids)
        return got if all(c.status == pb.CAMPAIGN_STATUS_DRAFT for c in got) else None

    async with batches(worker, js, nats_conn, size=5):
        await eventually(drafts, "both drafts", seconds=30)

    approved = await approval.approve(tenant_id, ids[0], actor="ops@example.com")
    assert approved.status == pb.CAMPAIGN_STATUS_ACTIVE
