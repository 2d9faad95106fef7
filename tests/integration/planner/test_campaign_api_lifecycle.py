"""CampaignService on real PostgreSQL, pause, resume and cancel: idempotent, timers canceled and
re-armed inside the send window, and another tenant's campaign not found.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    BUSINESS_HOURS,
    DAY,
    NEW_YORK,
    at,
    drain_outbox,
    inside_business_hours,
    request,
    schedules,
    sent,
    step_rows,
    timer_commands,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner.reactor import Reactor


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
