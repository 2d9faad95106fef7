"""CampaignService on real PostgreSQL, strategy preview: the schedule shown without storing a
campaign, and a bad timing named by its step.
"""

from __future__ import annotations

import pytest
from helpers import BUSINESS_HOURS, DAY, at, count_campaigns, drain_outbox, inside_business_hours, request, strategy
from sqlalchemy import func, select

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.errors import InvalidArgument
from dripiq_planner.models import campaign_steps


async def test_preview_stores_no_campaign_and_shows_the_schedule(engine, strategy_preview, clock, tenant_id):
    contact = pb.Contact(contact_id="c-ny", email="ny@example.com", time_zone="America/New_York")
    preview = await strategy_preview.preview(
        pb.PreviewStrategyRequest(
            request=request(
                tenant_id, contact=contact, send_window=BUSINESS_HOURS, strategy=strategy("Day 0", "Day 3", "48h")
            )
        ),
        actor="user:previewer-1",
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
    assert (
        await strategy_preview.preview(pb.PreviewStrategyRequest(request=templated), actor="user:previewer-1")
    ).strategist == "template"

    assert await count_campaigns(engine, tenant_id) == 0
    async with engine.connect() as conn:
        steps = (await conn.execute(select(func.count()).where(campaign_steps.c.tenant_id == tenant_id))).scalar_one()
    assert steps == 0
    assert await drain_outbox(engine, tenant_id) == []


async def test_preview_with_a_bad_timing_names_the_step(strategy_preview, tenant_id):
    bad = strategy("Day 0", "Day 3", "whenever")
    with pytest.raises(InvalidArgument) as exc:
        await strategy_preview.preview(
            pb.PreviewStrategyRequest(request=request(tenant_id, strategy=bad)), actor="user:previewer-1"
        )
    assert exc.value.field == "strategy.outreachCampaign[2].timing"
