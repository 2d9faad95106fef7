"""The daily AI token budget holds under concurrency and faults, and its history is pruned, on
real PostgreSQL, through the real `openai` client against the fake OpenAI server.

Each call holds the most tokens it can use (its prompt's bound and max_completion_tokens)
before it starts and settles to the answer's usage afterwards, so calls in flight can never
take a tenant past its budget; a call without an answer gives its hold back; a process that
dies between the two keeps the hold counted (less spent, never more)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import pytest
import pytest_asyncio
from helpers import T0, openai_strategist, request
from pydantic import ValidationError
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_openai import FakeOpenAI
from dripiq_devtools.fake_openai.behaviours import SERVER_ERROR
from dripiq_planner.ai_budget import AiBudget, BudgetLimits, BudgetSpent, Reservation, prune_usage
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import ai_budget_usage, ai_generations
from dripiq_planner.planning import Planner
from dripiq_planner.settings import PlannerSettings
from dripiq_planner.strategist.openai_strategist import OpenAIStrategist

MAX_COMPLETION = 4000


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(retry_after_seconds=0.01) as server:
        yield server


@pytest_asyncio.fixture
async def strategist(fake: FakeOpenAI, engine: AsyncEngine, clock: ManualClock) -> AsyncIterator[OpenAIStrategist]:
    made = openai_strategist(
        fake.url, budget=AiBudget(engine, clock), concurrency=16, max_completion_tokens=MAX_COMPLETION
    )
    yield made
    await made.aclose()


def creator_with(engine: AsyncEngine, clock: ManualClock, strategist: OpenAIStrategist, budget: BudgetLimits):
    return CampaignCreator(engine, clock, Planner(engine, strategist, ai_budget=budget), plan_inline=True)


def planned(tenant_id: str, n: int) -> pb.CreateCampaignRequest:
    req = request(tenant_id, contact=pb.Contact(contact_id=f"c-{n}", email=f"c{n}@example.com", first_name="Ada"))
    req.ClearField("strategy")
    return req


async def usage_row(engine: AsyncEngine, tenant_id: str):
    async with engine.connect() as conn:
        return (await conn.execute(select(ai_budget_usage).where(ai_budget_usage.c.tenant_id == tenant_id))).one()


async def used_by_answers(engine: AsyncEngine, tenant_id: str) -> int:
    async with engine.connect() as conn:
        query = select(
            func.coalesce(func.sum(ai_generations.c.prompt_tokens + ai_generations.c.completion_tokens), 0)
        ).where(ai_generations.c.tenant_id == tenant_id)
        return int((await conn.execute(query)).scalar_one())


# -- reserve the most, settle the real ----------------------------------------------------


async def test_concurrent_plans_never_take_the_tenant_past_its_token_budget(engine, clock, tenant_id, fake, strategist):
    # Room for two calls' holds, not three: without holds all twelve would start at once.
    budget = BudgetLimits(calls=1000, tokens=2 * MAX_COMPLETION + 2 * 9000)
    creator = creator_with(engine, clock, strategist, budget)
    fake.latency_seconds = 0.2  # the calls overlap, so every reservation is made while others are in flight

    made = await asyncio.gather(*(creator.create(planned(tenant_id, n)) for n in range(12)))

    usage = await usage_row(engine, tenant_id)
    asked = len(fake.requests)
    assert 1 <= asked < 12, asked
    assert sorted(c.strategist for c in made).count("openai") == asked
    # Every answer settled: the row holds exactly what the answers used, within the budget.
    assert usage.calls == asked
    assert usage.tokens == await used_by_answers(engine, tenant_id)
    assert usage.tokens <= budget.tokens
    # Each request carried the limit its hold was made with.
    assert {r.body["max_completion_tokens"] for r in fake.requests} == {MAX_COMPLETION}
    async with engine.connect() as conn:
        errors = (
            await conn.execute(
                select(ai_generations.c.error).where(
                    ai_generations.c.tenant_id == tenant_id, ai_generations.c.outcome == "fallback"
                )
            )
        ).scalars()
        refused = list(errors)
    assert len(refused) == 12 - asked
    assert all(e.startswith("ai_budget_spent: the tenant's daily AI tokens budget") for e in refused)


async def test_a_call_that_cannot_fit_its_hold_is_never_made(engine, clock, tenant_id, fake, strategist):
    # Less than one call's most: the budget would be passed if the call were made.
    creator = creator_with(engine, clock, strategist, BudgetLimits(calls=1000, tokens=MAX_COMPLETION))

    made = await creator.create(planned(tenant_id, 0))

    assert made.strategist == "template"
    assert fake.requests == []
    usage = await usage_row(engine, tenant_id)
    assert (usage.calls, usage.tokens) == (0, 0)


async def test_a_call_without_an_answer_gives_its_hold_back(engine, clock, tenant_id, fake, strategist):
    fake.queue(SERVER_ERROR)
    creator = creator_with(engine, clock, strategist, BudgetLimits(calls=1000, tokens=10**6))

    made = await creator.create(planned(tenant_id, 0))

    assert made.strategist == "template"
    usage = await usage_row(engine, tenant_id)
    # Counted as a call (it was made), no tokens: the API billed none and the hold is back.
    assert (usage.calls, usage.tokens) == (1, 0)


async def test_a_hold_never_settled_stays_counted_so_the_budget_errs_low(engine, clock, tenant_id):
    budget = AiBudget(engine, clock)
    limits = BudgetLimits(calls=10, tokens=1000)
    held = await budget.reserve(tenant_id, limits, 700)
    assert isinstance(held, Reservation)
    # The process that held 700 dies here, before its answer; a replica asks for 400.

    refused = await budget.reserve(tenant_id, limits, 400)

    assert isinstance(refused, BudgetSpent) and refused.budget == "tokens"
    assert isinstance(await budget.reserve(tenant_id, limits, 300), Reservation)
    assert (await usage_row(engine, tenant_id)).tokens == 1000
    # The next UTC day starts empty.
    clock.advance(timedelta(days=1))
    assert isinstance(await budget.reserve(tenant_id, limits, 400), Reservation)


async def test_settling_more_than_was_held_records_the_truth(engine, clock, tenant_id):
    budget = AiBudget(engine, clock)
    held = await budget.reserve(tenant_id, BudgetLimits(calls=10, tokens=1000), 100)
    assert isinstance(held, Reservation)

    await budget.settle(held, 150)

    assert (await usage_row(engine, tenant_id)).tokens == 150


# -- pruning ------------------------------------------------------------------------------


async def test_old_days_are_pruned_in_bounded_batches(engine, tenant_id):
    today = T0.astimezone(UTC).date()
    async with engine.begin() as conn:
        await conn.execute(
            insert(ai_budget_usage),
            [
                {"tenant_id": f"{tenant_id}{suffix}", "day": today - timedelta(days=age), "calls": 1, "tokens": 1}
                for suffix in ("", "-b")
                for age in range(0, 100)
            ],
        )
    before = today - timedelta(days=90)

    rounds = []
    for _ in range(10):
        rounds.append(await prune_usage(engine, before=before, limit=7))
        if rounds[-1] < 7:
            break

    # 9 old days (91..99 days ago) for each of the two tenants, 7 at a time.
    assert rounds == [7, 7, 4]
    async with engine.connect() as conn:
        days = (
            await conn.execute(
                select(ai_budget_usage.c.day).where(ai_budget_usage.c.tenant_id.in_([tenant_id, f"{tenant_id}-b"]))
            )
        ).scalars()
        kept = list(days)
    assert len(kept) == 2 * 91 and min(kept) == before


def test_the_retention_settings_refuse_nonsense():
    with pytest.raises(ValidationError, match="ai_budget_retention_days"):
        PlannerSettings(ai_budget_retention_days=0)
    with pytest.raises(ValidationError, match="ai_max_completion_tokens"):
        PlannerSettings(ai_max_completion_tokens=0)
