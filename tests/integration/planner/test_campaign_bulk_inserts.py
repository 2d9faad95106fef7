"""Campaigns, steps and strategist calls go in as one INSERT ... FROM unnest per table: what a
row holds comes back exactly (JSON with quotes, backslashes and any script included), a
duplicate fails the whole batch as the IntegrityError a create retries on, and a batch whose
connection dies before its commit leaves nothing behind."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from helpers import campaign_row, count_campaigns, item, step_rows, strategy
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_planner import repository
from dripiq_planner.creating import CampaignCreator

# Every character class a JSON text or an array literal could trip over.
AWKWARD = "Ünïcødé \"quoted\" \\back\\slash\\ {braces} [brackets] , comma 'single' 🚀 مرحبا NULL"


async def stored_rows(engine: AsyncEngine, campaign_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    campaign = dict((await campaign_row(engine, campaign_id))._mapping)
    steps = [dict(r._mapping) for r in await step_rows(engine, campaign_id)]
    for step in steps:
        del step["id"]
    return campaign, steps


async def test_awkward_text_and_json_come_back_exactly(creator: CampaignCreator, engine: AsyncEngine) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    plan = strategy("Day 0", "Day 3")
    plan.summary = AWKWARD
    plan.outreach_campaign[1].content = AWKWARD
    answer = await creator.batch_create(
        pb.BatchCreateCampaignsRequest(
            tenant_id=tenant,
            requests=[
                item(f"c-{n}", lead=pb.Lead(lead_id=f"lead-{n}", company_name=AWKWARD), strategy=plan) for n in range(3)
            ],
        )
    )
    assert all(r.HasField("campaign") for r in answer.results)
    campaign = answer.results[2].campaign
    row, steps = await stored_rows(engine, campaign.campaign_id)
    assert row["strategy_json"]["summary"] == AWKWARD
    assert row["facts_json"]["company_name"] == AWKWARD
    assert [s["step_index"] for s in steps] == [0, 1]
    assert steps[1]["content"] == AWKWARD
    assert [s.content for s in campaign.steps] == [s["content"] for s in steps]


async def test_a_duplicate_fails_the_whole_batch_as_an_integrity_error(
    creator: CampaignCreator, engine: AsyncEngine
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant, requests=[item("c-0")]))
    row, steps = await stored_rows(engine, answer.results[0].campaign.campaign_id)
    other = f"t-{uuid.uuid4().hex[:12]}"
    fresh = {**row, "id": str(uuid.uuid4()), "tenant_id": other, "request_id": None}
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await repository.insert_campaigns(
                conn,
                campaigns=[fresh, {**fresh, "contact_id": "another"}],
                steps=[{**s, "campaign_id": fresh["id"], "tenant_id": other} for s in steps],
                generations=[],
            )
    assert await count_campaigns(engine, other) == 0


async def test_a_batch_whose_connection_dies_before_commit_leaves_nothing(
    creator: CampaignCreator, engine: AsyncEngine, database_url: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    answer = await creator.batch_create(pb.BatchCreateCampaignsRequest(tenant_id=tenant, requests=[item("c-0")]))
    row, steps = await stored_rows(engine, answer.results[0].campaign.campaign_id)
    other = f"t-{uuid.uuid4().hex[:12]}"
    batch = [
        {**row, "id": str(uuid.uuid4()), "tenant_id": other, "request_id": None, "contact_id": f"c-{n}"}
        for n in range(50)
    ]
    admin = await asyncpg.connect(database_url)
    try:
        with pytest.raises(DBAPIError):
            async with engine.begin() as conn:
                await repository.insert_campaigns(
                    conn,
                    campaigns=batch,
                    steps=[{**s, "campaign_id": c["id"], "tenant_id": other} for c in batch for s in steps],
                    generations=[],
                )
                pid = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
                # The process holding the batch dies between its inserts and its commit.
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                await conn.exec_driver_sql("SELECT 1")
    finally:
        await admin.close()
    assert await count_campaigns(engine, other) == 0
