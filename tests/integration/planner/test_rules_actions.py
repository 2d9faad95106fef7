"""The planner's adaptive rules on real PostgreSQL, actions: schedule the next step, skip to a
step, reschedule, cancel or complete, pause (and the resume timer it arms).

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

import pytest
from helpers import (
    HOUR,
    JITTER,
    at,
    campaign_row,
    canceled_groups,
    canceled_keys,
    drain_outbox,
    fire_step,
    rule,
    schedules,
    send_commands,
    snapshot,
    statuses,
    step_due_of,
    step_rows,
    step_timer,
    timer_commands,
    walk,
    within_jitter,
)

from dripiq.planner.v1 import timers_pb2


async def test_schedule_next_step_action(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("click", "schedule_next_step", delaySeconds=7200))

    await reactor.on_engagement(s.event("click"))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert step_due_of(timer).step_index == 1
    assert within_jitter(timer.fire_at, clock.now() + 2 * HOUR)
    assert await statuses(engine, s.campaign_id) == ("active", ["sent", "scheduled", "pending"])


async def test_skip_to_step_action(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("click", "skip_to_step", stepIndex=2))
    old = (await step_rows(engine, s.campaign_id))[1]

    await reactor.on_engagement(s.event("click"))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert timer.key == f"{s.campaign_id}:step"
    assert step_due_of(timer) == timers_pb2.StepDue(step_index=2, schedule_version=1)
    assert at(timer.fire_at) == clock.now()
    assert await statuses(engine, s.campaign_id) == ("active", ["sent", "skipped", "scheduled"])

    # The skipped step's timer (if the scheduler fired it before the re-arm) does nothing.
    await reactor.on_timer(step_timer(tenant_id, s.campaign_id, 1, old.schedule_version))
    assert await drain_outbox(engine, tenant_id) == []
    send = await fire_step(engine, reactor, clock, tenant_id, s.campaign_id)
    assert send.step_index == 2


async def test_reschedule_step_action_counts_from_the_current_schedule(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("open", "reschedule_step", delaySeconds=7200))
    planned = (await step_rows(engine, s.campaign_id))[1].scheduled_at

    await reactor.on_engagement(s.event("open"))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert step_due_of(timer).step_index == 1
    assert planned + 2 * HOUR <= at(timer.fire_at) < planned + 2 * HOUR + JITTER


@pytest.mark.parametrize(("action", "status"), [("cancel_campaign", "canceled"), ("complete_campaign", "completed")])
async def test_ending_actions(engine, creator, reactor, clock, tenant_id, action, status):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("click", action))

    await reactor.on_engagement(s.event("click"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert canceled_groups(commands) == [f"campaign:{s.campaign_id}"]
    assert await statuses(engine, s.campaign_id) == (status, ["sent", "canceled", "canceled"])
    campaign = await campaign_row(engine, s.campaign_id)
    assert (campaign.cancel_reason, campaign.ended_at) == ("click", clock.now())
    # An ended campaign's step timer does nothing.
    step = (await step_rows(engine, s.campaign_id))[1]
    await reactor.on_timer(step_timer(tenant_id, s.campaign_id, 1, step.schedule_version))
    assert await drain_outbox(engine, tenant_id) == []


async def test_pause_campaign_action_and_its_resume_timer(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("click", "pause_campaign", resumeAfterSeconds=3600))
    step = (await step_rows(engine, s.campaign_id))[1]

    await reactor.on_engagement(s.event("click"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert sorted(canceled_keys(commands)) == sorted([f"{s.campaign_id}:step", s.key("no_open_48h")])
    [resume] = schedules(commands)
    assert (resume.key, resume.kind) == (f"{s.campaign_id}:resume", "resume")
    assert at(resume.fire_at) == clock.now() + HOUR
    assert timers_pb2.PlannerTimer.FromString(resume.payload).resume_due.pause_version == 1
    assert await statuses(engine, s.campaign_id) == ("paused", ["sent", "scheduled", "pending"])

    # The step timer of a paused campaign does nothing.
    await reactor.on_timer(step_timer(tenant_id, s.campaign_id, 1, step.schedule_version))
    assert await drain_outbox(engine, tenant_id) == []

    clock.advance(HOUR)
    await reactor.on_timer(resume.payload)
    [rearmed] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert step_due_of(rearmed) == timers_pb2.StepDue(step_index=1, schedule_version=step.schedule_version + 1)
    assert step.scheduled_at <= at(rearmed.fire_at) < step.scheduled_at + JITTER
    assert await statuses(engine, s.campaign_id) == ("active", ["sent", "scheduled", "pending"])

    # The old step timer is stale now; the re-armed one sends.
    await reactor.on_timer(step_timer(tenant_id, s.campaign_id, 1, step.schedule_version))
    assert await drain_outbox(engine, tenant_id) == []
    await reactor.on_timer(rearmed.payload)
    [send] = send_commands(await drain_outbox(engine, tenant_id))
    assert send.step_index == 1


async def test_a_resume_timer_from_an_older_pause_does_nothing(engine, creator, campaigns, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id, rule("click", "pause_campaign", resumeAfterSeconds=3600))
    await reactor.on_engagement(s.event("click"))
    [old_resume] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))

    await campaigns.resume(tenant_id, s.campaign_id)
    await campaigns.pause(tenant_id, s.campaign_id, 0)
    await drain_outbox(engine, tenant_id)
    before = await snapshot(engine, s.campaign_id)

    clock.advance(HOUR)
    await reactor.on_timer(old_resume.payload)

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, s.campaign_id) == before
    assert (await campaign_row(engine, s.campaign_id)).status == "paused"
