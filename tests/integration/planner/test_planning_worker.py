"""Planning as work, on real PostgreSQL and NATS, through the real `openai` client against the
fake OpenAI: creates answer at once with planning campaigns, the planning workers plan them
(one strategy, one first timer each, whatever is redelivered), a tenant's concurrency holds,
and why the template planned is on the campaign."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import drain_outbox, item, openai_strategist, schedules, timer_commands
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.bus.contract import Consumers, Streams
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_openai import SERVER_ERROR, FakeOpenAI
from dripiq_planner.ai_budget import AiBudget, BudgetLimits
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import campaign_steps
from dripiq_planner.planning import Planner
from dripiq_planner.planning_worker import Claim, PlanningWorker
from dripiq_planner.stats import TenantStats
from dripiq_planner.tenant_settings import TenantSettingsService

PLENTY = BudgetLimits(calls=10_000, tokens=10**9)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(retry_after_seconds=0.01) as server:
        yield server


@pytest_asyncio.fixture
async def planner(engine: AsyncEngine, clock: ManualClock, fake: FakeOpenAI) -> AsyncIterator[Planner]:
    strategist = openai_strategist(fake.url, budget=AiBudget(engine, clock), concurrency=16)
    yield Planner(engine, strategist, ai_budget=PLENTY)
    await strategist.aclose()


def spec_for(tenant_id: str, **options: Any):  # type: ignore[no-untyped-def]
    """The planning consumer's settings on a durable of this test's tenant only, with short waits."""
    return replace(
        Consumers.PLANNER_PLANNING,
        durable=f"planning-{uuid.uuid4().hex[:8]}",
        filter_subject=f"dripiq.planner.plan.{tenant_id}",
        **{"ack_wait_seconds": 2, "retry_delays_seconds": (0.1,), **options},
    )


async def publish_outbox(engine: AsyncEngine, js: JetStreamContext, tenant_id: str) -> int:
    """What the relay does: the tenant's plan-campaign work onto PLANNER_PLANNING (timer
    commands are kept aside for the test to read)."""
    rows = await drain_outbox(engine, tenant_id)
    kept = []
    for subject, payload in rows:
        if subject.startswith("dripiq.planner.plan."):
            await js.publish(subject, payload, stream=Streams.PLANNER_PLANNING.name)
        else:
            kept.append((subject, payload))
    TIMERS.setdefault(tenant_id, []).extend(kept)
    return len(rows) - len(kept)


TIMERS: dict[str, list[tuple[str, bytes]]] = {}


@asynccontextmanager
async def running(worker: PlanningWorker, js: JetStreamContext, nc: Any, slots: int) -> AsyncIterator[PullWorker]:
    pull = PullWorker(js, nc, worker.spec, per_message(worker.handle), batch_size=1, batches_in_flight=slots)
    task = asyncio.create_task(pull.run())
    try:
        yield pull
    finally:
        pull.stop()
        await asyncio.wait_for(task, timeout=10)
        await js.delete_consumer(Streams.PLANNER_PLANNING.name, worker.spec.durable)


async def statuses(campaigns: CampaignService, tenant_id: str, ids: list[str]) -> list[pb.Campaign]:
    return [await campaigns.get(tenant_id, i) for i in ids]


async def all_active(
    engine: AsyncEngine, js: JetStreamContext, campaigns: CampaignService, tenant_id: str, ids: list[str]
) -> list[pb.Campaign] | None:
    # A deferred message comes back through the outbox: the relay's part.
    await publish_outbox(engine, js, tenant_id)
    got = await statuses(campaigns, tenant_id, ids)
    return got if all(c.status == pb.CAMPAIGN_STATUS_ACTIVE for c in got) else None


def unplanned(n: int) -> list[pb.CreateCampaignRequest]:
    items = [item(f"c-{i}") for i in range(n)]
    for one in items:
        one.ClearField("strategy")
    return items


async def test_a_batch_answers_planning_and_the_workers_plan_each_with_the_model(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(5)))

    assert [r.campaign.status for r in answer.results] == [pb.CAMPAIGN_STATUS_PLANNING] * 5
    assert fake.requests == []
    ids = [r.campaign.campaign_id for r in answer.results]
    assert await publish_outbox(engine, js, tenant_id) == 5
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))
    async with running(worker, js, nats_conn, slots=4):
        planned = await eventually(
            lambda: all_active(engine, js, campaigns, tenant_id, ids), "every campaign planned", seconds=30
        )

    assert {(c.strategist, c.strategist_reason) for c in planned} == {("openai", "")}
    assert all(c.steps and c.steps[0].status == pb.STEP_STATUS_SCHEDULED and c.HasField("planned_at") for c in planned)
    await publish_outbox(engine, js, tenant_id)
    first_timers = [t.key for t in schedules(timer_commands(TIMERS.pop(tenant_id)))]
    assert sorted(first_timers) == sorted(f"{i}:step" for i in ids)
    stats = await TenantStats(engine, clock, PLENTY, 8).get(tenant_id)
    assert stats.planning.waiting == 0
    assert [(s.strategist, s.count) for s in stats.planning.planned_today] == [("openai", 5)]
    assert stats.planning.ai_calls_left_today == PLENTY.calls - 5
    assert [(s.status, s.count) for s in stats.campaigns_by_status] == [(pb.CAMPAIGN_STATUS_ACTIVE, 5)]


async def test_the_backlog_is_visible_while_it_waits(engine, clock, tenant_id, planner):
    creator = CampaignCreator(engine, clock, planner)
    await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(3)))
    clock.advance(timedelta(minutes=5))

    stats = await TenantStats(engine, clock, PLENTY, 8).get(tenant_id)

    assert stats.planning.waiting == 3
    assert (
        stats.planning.oldest_waiting_since.ToDatetime().timestamp() == (clock.now() - timedelta(minutes=5)).timestamp()
    )
    assert [(s.status, s.count) for s in stats.campaigns_by_status] == [(pb.CAMPAIGN_STATUS_PLANNING, 3)]


async def test_a_spent_budget_and_a_failing_model_plan_with_the_template_saying_why(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    settings = TenantSettingsService(engine, clock)
    await settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, ai_daily_call_budget=1),
            update_mask={"paths": ["ai_daily_call_budget"]},
        )
    )
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(2)))
    ids = [r.campaign.campaign_id for r in answer.results]
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id), tenant_concurrency=1)
    async with running(worker, js, nats_conn, slots=1):
        planned = await eventually(lambda: all_active(engine, js, campaigns, tenant_id, ids), "both planned")

    assert sorted(c.strategist for c in planned) == ["openai", "template"]
    [spent] = [c for c in planned if c.strategist == "template"]
    assert spent.strategist_reason.startswith("ai_budget_spent: the tenant's daily AI calls budget (1 calls)")


async def test_a_model_without_answers_is_retried_then_the_template_plans(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    fake.default_behaviour = SERVER_ERROR
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    [created] = (
        await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(1)))
    ).results
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id, max_deliver=3))
    async with running(worker, js, nats_conn, slots=1):
        [campaign] = await eventually(
            lambda: all_active(engine, js, campaigns, tenant_id, [created.campaign.campaign_id]), "planned"
        )

    # Three deliveries: two retried, the last planned with the template.
    assert len(fake.requests) == 3
    assert campaign.strategist == "template"
    assert campaign.strategist_reason.startswith("model_error: ")


async def test_a_tenant_plans_no_more_than_its_concurrency_at_once(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    fake.latency_seconds = 0.3
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, planning_concurrency=2),
            update_mask={"paths": ["planning_concurrency"]},
        )
    )
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(6)))
    ids = [r.campaign.campaign_id for r in answer.results]
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id), defer_seconds=0.05)
    async with running(worker, js, nats_conn, slots=6):
        planned = await eventually(lambda: all_active(engine, js, campaigns, tenant_id, ids), "all six", seconds=30)

    assert {c.strategist for c in planned} == {"openai"}
    assert fake.max_in_flight == 2
    assert len(fake.requests) == 6


async def test_a_worker_dying_mid_plan_leaves_it_planning_and_it_is_planned_once(
    engine, clock, tenant_id, planner, fake, nats_conn, js
):
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    [created] = (
        await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(1)))
    ).results
    campaign_id = created.campaign.campaign_id
    await publish_outbox(engine, js, tenant_id)
    spec = spec_for(tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec)

    # A worker takes the message and the campaign, asks the model, and dies before storing.
    await js.add_consumer(Streams.PLANNER_PLANNING.name, spec.config())
    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=Streams.PLANNER_PLANNING.name)
    [taken] = await sub.fetch(1, timeout=5)
    claim, row = await worker.claim(tenant_id, campaign_id)
    assert claim is Claim.TAKEN
    late_draft = await planner.plan_stored(row, raise_when_unavailable=True)
    await sub.unsubscribe()
    assert (await campaigns.get(tenant_id, campaign_id)).status == pb.CAMPAIGN_STATUS_PLANNING

    # Its hold runs out; the message comes back (never acked) and another worker plans it.
    clock.advance(worker.hold + timedelta(seconds=1))
    async with running(worker, js, nats_conn, slots=1):
        [planned] = await eventually(
            lambda: all_active(engine, js, campaigns, tenant_id, [campaign_id]), "replanned", seconds=30
        )
    assert taken.metadata.num_delivered == 1

    # The dead worker's plan, stored late, changes nothing.
    assert await worker.store(late_draft) is False
    async with engine.connect() as conn:
        steps = (
            await conn.execute(select(func.count()).where(campaign_steps.c.campaign_id == campaign_id))
        ).scalar_one()
    assert steps == len(planned.strategy.outreach_campaign) == len(planned.steps)
    await publish_outbox(engine, js, tenant_id)
    assert [t.key for t in schedules(timer_commands(TIMERS.pop(tenant_id)))] == [f"{campaign_id}:step"]


async def test_a_canceled_planning_campaign_is_never_planned(engine, clock, tenant_id, planner, fake, nats_conn, js):
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    [created] = (
        await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(1)))
    ).results
    campaign_id = created.campaign.campaign_id
    canceled = await campaigns.cancel(tenant_id, campaign_id, "changed my mind")
    assert canceled.status == pb.CAMPAIGN_STATUS_CANCELED
    await publish_outbox(engine, js, tenant_id)
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))

    assert await worker.claim(tenant_id, campaign_id) == (Claim.DONE, None)
    assert fake.requests == []


async def test_a_tenant_that_requires_approval_gets_its_planned_campaigns_as_drafts(
    engine, clock, tenant_id, planner, nats_conn, js
):
    await TenantSettingsService(engine, clock).update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, require_approval=True),
            update_mask=FieldMask(paths=["require_approval"]),
        )
    )
    creator = CampaignCreator(engine, clock, planner)
    campaigns = CampaignService(engine, clock)
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant_id, requests=unplanned(3)))
    ids = [r.campaign.campaign_id for r in answer.results]
    assert await publish_outbox(engine, js, tenant_id) == 3
    worker = PlanningWorker(engine, clock, planner, spec_for(tenant_id))

    async def all_drafts() -> list[pb.Campaign] | None:
        got = await statuses(campaigns, tenant_id, ids)
        return got if all(c.status == pb.CAMPAIGN_STATUS_DRAFT for c in got) else None

    async with running(worker, js, nats_conn, slots=2):
        drafted = await eventually(all_drafts, "every campaign planned into a draft", seconds=30)

    # Planned by the model, waiting for a person: every step pending with its planned time, and
    # no timer armed.
    assert {c.strategist for c in drafted} == {"openai"}
    assert all(s.status == pb.STEP_STATUS_PENDING and s.HasField("scheduled_at") for c in drafted for s in c.steps)
    await publish_outbox(engine, js, tenant_id)
    assert schedules(timer_commands(TIMERS.pop(tenant_id, []))) == []
