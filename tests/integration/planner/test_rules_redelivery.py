"""The planner's adaptive rules on real PostgreSQL, redelivery: a redelivered timer, outcome or
engagement applies once, and a step timer that is stale (an older schedule version, a
canceled or paused campaign) does nothing.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    by_kind,
    campaign_row,
    decisions,
    drain_outbox,
    schedules,
    send_commands,
    sent,
    snapshot,
    start,
    step_rows,
    step_timer,
    timer_commands,
    walk,
)
from sqlalchemy.ext.asyncio import AsyncEngine


async def _twice(engine: AsyncEngine, tenant_id: str, campaign_id: str, handle) -> list:  # type: ignore[no-untyped-def]
    """Run `handle` twice; the second run must change nothing. Returns the first run's outbox."""
    await handle()
    first = await drain_outbox(engine, tenant_id)
    state = await snapshot(engine, campaign_id)
    recorded = await decisions(engine, tenant_id)
    await handle()
    assert await drain_outbox(engine, tenant_id) == [], "a redelivery outboxed again"
    assert await snapshot(engine, campaign_id) == state, "a redelivery changed the campaign"
    assert await decisions(engine, tenant_id) == recorded, "a redelivery recorded another decision"
    return first


async def test_redelivered_step_timer_sends_once(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    step = (await step_rows(engine, campaign_id))[0]
    payload = step_timer(tenant_id, campaign_id, 0, step.schedule_version)

    first = await _twice(engine, tenant_id, campaign_id, lambda: reactor.on_timer(payload))

    assert [s.step_index for s in send_commands(first)] == [0]


async def test_redelivered_sent_outcome_schedules_once(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)

    # Already delivered once inside `sent`: a redelivery changes nothing.
    state = await snapshot(engine, campaign_id)
    await reactor.on_outcome(s.outcome)
    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, campaign_id) == state
    assert sorted(by_kind(s.commands)) == ["no_open_48h", "step_due"]
    assert len(s.commands) == 2


async def test_redelivered_engagement_applies_once(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    event = s.event("open", event_id="e-1")

    first = await _twice(engine, tenant_id, s.campaign_id, lambda: reactor.on_engagement(event))

    assert len(schedules(timer_commands(first))) == 1
    # Another open of the same message (a new event id) is the same trigger: decided already.
    state = await snapshot(engine, s.campaign_id)
    await reactor.on_engagement(s.event("open", event_id="e-2"))
    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, s.campaign_id) == state
    assert [(d.trigger, d.source) for d in await decisions(engine, tenant_id)] == [("open", "event:e-1")]


async def test_redelivered_trigger_timer_applies_once(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(timedelta(hours=48))

    first = await _twice(engine, tenant_id, campaign_id, lambda: reactor.on_timer(s.timer("no_open_48h")))

    assert len(schedules(timer_commands(first))) == 1
    assert len(await decisions(engine, tenant_id)) == 1


async def test_redelivered_resume_timer_resumes_once(engine, creator, campaigns, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    await campaigns.pause(tenant_id, campaign_id, 600)
    [resume] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    clock.advance(timedelta(minutes=10))

    first = await _twice(engine, tenant_id, campaign_id, lambda: reactor.on_timer(resume.payload))

    assert [t.kind for t in schedules(timer_commands(first))] == ["step_due"]
    assert (await campaign_row(engine, campaign_id)).status == "active"


async def test_step_timer_of_an_older_schedule_version_is_ignored(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    older = (await step_rows(engine, s.campaign_id))[1]
    await reactor.on_engagement(s.event("open"))  # re-arms step 1 with a newer version
    await drain_outbox(engine, tenant_id)
    before = await snapshot(engine, s.campaign_id)

    await reactor.on_timer(step_timer(tenant_id, s.campaign_id, 1, older.schedule_version))

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, s.campaign_id) == before


@pytest.mark.parametrize("ended_by", ["cancel", "pause"])
async def test_step_timer_of_a_canceled_or_paused_campaign_does_nothing(
    engine, creator, campaigns, reactor, clock, tenant_id, ended_by
):
    campaign_id = await start(creator, tenant_id)
    step = (await step_rows(engine, campaign_id))[0]
    if ended_by == "cancel":
        await campaigns.cancel(tenant_id, campaign_id, "test")
    else:
        await campaigns.pause(tenant_id, campaign_id, 0)
    await drain_outbox(engine, tenant_id)
    before = await snapshot(engine, campaign_id)

    await reactor.on_timer(step_timer(tenant_id, campaign_id, 0, step.schedule_version))

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, campaign_id) == before
