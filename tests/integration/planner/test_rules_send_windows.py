"""The planner's adaptive rules on real PostgreSQL, send windows: a step moved by a rule lands
inside the contact's send window, across a weekend and a daylight saving change.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from helpers import (
    ALWAYS,
    BUSINESS_HOURS,
    DAY,
    HOUR,
    NEW_YORK,
    THREE_STEPS,
    at,
    campaign_creator,
    drain_outbox,
    fire_step,
    inside_business_hours,
    request,
    rule,
    schedules,
    sent,
    step_rows,
    strategy,
    timer_commands,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_planner.reactor import Reactor

# Friday 2030-03-08, 10:00 in New York; US daylight saving time starts on Sunday 2030-03-10.
FRIDAY_MORNING = datetime(2030, 3, 8, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("event_type", "rules", "earliest"),
    [
        # Default open rule: 1-2 days from Friday afternoon is the weekend.
        ("open", (), DAY),
        # 8 hours from Friday 13:01 is Friday night.
        ("click", (rule("click", "schedule_next_step", delaySeconds=8 * 3600),), 8 * HOUR),
        # Reschedule by 7 hours from the step's own time (Monday 11:01) is Monday evening.
        ("open", (rule("open", "reschedule_step", delaySeconds=7 * 3600),), None),
    ],
)
async def test_rule_driven_reschedules_land_inside_the_send_window(
    engine, reactor, tenant_id, event_type, rules, earliest
):
    clock = ManualClock(FRIDAY_MORNING)
    creator = campaign_creator(engine, clock)
    reactor = Reactor(engine, clock)
    contact = pb.Contact(contact_id="c-ny", email="ny@example.com", first_name="Ny", time_zone="America/New_York")
    created = await creator.create(
        request(tenant_id, contact=contact, send_window=BUSINESS_HOURS, strategy=strategy(*THREE_STEPS, rules=rules))
    )
    assert created.time_zone == "America/New_York"
    assert inside_business_hours(at(created.steps[0].scheduled_at))
    s = await sent(engine, reactor, clock, tenant_id, created.campaign_id)
    planned = (await step_rows(engine, created.campaign_id))[1].scheduled_at
    assert inside_business_hours(planned)
    clock.advance(3 * HOUR)  # Friday 13:01 local

    await reactor.on_engagement(s.event(event_type))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    fire_at = at(timer.fire_at)
    assert inside_business_hours(fire_at), fire_at.astimezone(NEW_YORK)
    local = fire_at.astimezone(NEW_YORK)
    # Monday 11 March, after the DST change: the opening is 09:00 EDT (13:00 UTC).
    if earliest is not None:
        assert fire_at >= clock.now() + earliest
        assert (local.date().isoformat(), local.hour) == ("2030-03-11", 9)
        assert fire_at.astimezone(UTC).hour == 13
    else:
        assert fire_at >= planned + 7 * HOUR
        assert (local.date().isoformat(), local.hour) == ("2030-03-12", 9)
    assert (await step_rows(engine, created.campaign_id))[1].scheduled_at == fire_at


# -- a step's own send window -----------------------------------------------------------------

CALL_HOURS = pb.SendWindow(weekdays=[2, 3, 4], start_hour=10, end_hour=12)


def with_call_window() -> pb.Strategy:
    """An email any time, then a call only Tuesday to Thursday from 10:00 to 12:00, then an email."""
    plan = strategy(*THREE_STEPS)
    call = plan.outreach_campaign[1]
    call.type, call.subject, call.content = "call", "", "Ask about their quarter"
    call.send_window.CopyFrom(CALL_HOURS)
    return plan


def inside_call_hours(moment: datetime) -> bool:
    local = moment.astimezone(ZoneInfo("America/New_York"))
    return local.isoweekday() in (2, 3, 4) and 10 <= local.hour < 12


async def test_a_steps_own_window_places_it_and_goes_with_its_send(engine, tenant_id):
    clock = ManualClock(FRIDAY_MORNING)
    creator = campaign_creator(engine, clock)
    reactor = Reactor(engine, clock)
    contact = pb.Contact(contact_id="c-ny", email="ny@example.com", first_name="Ny", time_zone="America/New_York")
    created = await creator.create(request(tenant_id, contact=contact, send_window=ALWAYS, strategy=with_call_window()))
    assert created.steps[1].send_window == CALL_HOURS
    assert not created.steps[0].HasField("send_window")
    assert created.strategy.outreach_campaign[1].send_window == CALL_HOURS

    s = await sent(engine, reactor, clock, tenant_id, created.campaign_id)
    call = (await step_rows(engine, created.campaign_id))[1]
    # Day 3 from Friday is Monday: the call waits for Tuesday 10:00 in New York.
    assert inside_call_hours(call.scheduled_at)
    assert call.scheduled_at.astimezone(ZoneInfo("America/New_York")).isoweekday() == 2

    # An open moves it closer, still inside its own hours.
    clock.advance(HOUR)
    await reactor.on_engagement(s.event("open"))
    for timer in schedules(timer_commands(await drain_outbox(engine, tenant_id))):
        assert inside_call_hours(at(timer.fire_at))

    # The send command carries the step's window, for a send the dispatcher has to defer.
    send = await fire_step(engine, reactor, clock, tenant_id, created.campaign_id)
    assert (list(send.send_window.weekdays), send.send_window.start_hour, send.send_window.end_hour) == (
        [2, 3, 4],
        10,
        12,
    )
    assert send.send_window.time_zone == "America/New_York"


@pytest.mark.parametrize(
    ("window", "field"),
    [
        (pb.SendWindow(weekdays=[8], start_hour=10, end_hour=12), "strategy.outreachCampaign[1].sendWindow.weekdays"),
        (pb.SendWindow(start_hour=12, end_hour=10), "strategy.outreachCampaign[1].sendWindow.start_hour"),
        (pb.SendWindow(start_hour=10, end_hour=25), "strategy.outreachCampaign[1].sendWindow.start_hour"),
    ],
)
async def test_a_bad_step_window_is_invalid_argument_naming_it(engine, creator, tenant_id, window, field):
    plan = with_call_window()
    plan.outreach_campaign[1].send_window.CopyFrom(window)
    with pytest.raises(InvalidArgument) as exc:
        await creator.create(request(tenant_id, strategy=plan))
    assert exc.value.field == field
