"""The planner's adaptive rules on real PostgreSQL, timeouts: the no_open, no_click and
no_reply timers armed after a send, what they do when they fire, and how engagement settles them.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    DAY,
    HOUR,
    JITTER,
    at,
    by_kind,
    campaign_row,
    canceled_keys,
    decisions,
    drain_outbox,
    request,
    rule,
    schedules,
    sent,
    snapshot,
    start,
    step_due_of,
    step_rows,
    timer_commands,
)

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2

TIMEOUTS = [
    # (timeout trigger, the engagement that settles it, rules that keep the campaign running)
    ("no_open_24h", "open", ()),
    ("no_click_72h", "click", ()),
    ("no_reply_96h", "reply", (rule("reply", "schedule_next_step", delaySeconds=7200),)),
]


@pytest.mark.parametrize(("waited_for", "settled_by", "extra"), TIMEOUTS)
async def test_timeout_timer_is_scheduled_after_a_send(
    engine, creator, reactor, clock, tenant_id, waited_for, settled_by, extra
):
    campaign_id = await start(creator, tenant_id, rule(waited_for, "reschedule_step", delaySeconds=3600), *extra)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)

    timers = by_kind(s.commands)
    assert set(timers) == {"step_due", "no_open_48h", waited_for}
    hours = int(waited_for.split("_")[-1].rstrip("h"))
    timer = timers[waited_for]
    assert timer.key == s.key(waited_for)
    assert timer.group_key == f"campaign:{campaign_id}"
    assert at(timer.fire_at) == s.sent_at + timedelta(hours=hours)
    assert timers_pb2.PlannerTimer.FromString(timer.payload) == timers_pb2.PlannerTimer(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        trigger_due=timers_pb2.TriggerDue(message_id=s.message_id, step_index=0, trigger=waited_for),
    )
    # The default no_open_48h is there too, on its own key.
    assert timers["no_open_48h"].key == s.key("no_open_48h")
    assert at(timers["no_open_48h"].fire_at) == s.sent_at + timedelta(hours=48)


@pytest.mark.parametrize(("waited_for", "settled_by", "extra"), TIMEOUTS)
async def test_timeout_that_fires_without_engagement_applies_its_rule(
    engine, creator, reactor, clock, tenant_id, waited_for, settled_by, extra
):
    campaign_id = await start(creator, tenant_id, rule(waited_for, "reschedule_step", delaySeconds=3600), *extra)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    timer = by_kind(s.commands)[waited_for]
    planned = (await step_rows(engine, campaign_id))[1].scheduled_at
    clock.advance(at(timer.fire_at) - clock.now())

    await reactor.on_timer(timer.payload)

    [moved] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert step_due_of(moved).step_index == 1
    assert planned + HOUR <= at(moved.fire_at) < planned + HOUR + JITTER
    [decision] = await decisions(engine, tenant_id, campaign_id)
    assert (decision.trigger, decision.source, decision.action, decision.result) == (
        waited_for,
        s.key(waited_for),
        "reschedule_step",
        "applied",
    )


@pytest.mark.parametrize(("waited_for", "settled_by", "extra"), TIMEOUTS)
async def test_engagement_cancels_the_timeouts_it_settles_and_a_late_timer_does_nothing(
    engine, creator, reactor, clock, tenant_id, waited_for, settled_by, extra
):
    all_timeouts = [rule(t, "cancel_campaign") for t in ("no_open_24h", "no_click_72h", "no_reply_96h")]
    campaign_id = await start(creator, tenant_id, *all_timeouts, *extra)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(HOUR)

    await reactor.on_engagement(s.event(settled_by, event_id="e-1"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    expected = {
        "open": ["no_open_24h", "no_open_48h"],
        "click": ["no_click_72h", "no_open_24h", "no_open_48h"],
        "reply": ["no_reply_96h"],
    }
    assert sorted(canceled_keys(commands)) == sorted(s.key(t) for t in expected[settled_by])

    assert all(
        c.cancel.reason == f"moot: {settled_by} came first (event e-1)" for c in commands if c.HasField("cancel")
    )

    # The scheduler had already fired it: the timer re-checks its condition, stands down, and
    # is marked canceled as moot (the scheduler and the timeline say so), once.
    clock.advance(timedelta(days=5))
    before = await snapshot(engine, campaign_id)
    await reactor.on_timer(s.timer(waited_for))
    await reactor.on_timer(s.timer(waited_for))
    await assert_canceled_as_moot(engine, tenant_id, campaign_id, s.key(waited_for), f"{settled_by} came first")
    assert await snapshot(engine, campaign_id) == before
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == [settled_by, waited_for]


async def test_auto_reply_settles_no_reply_timeouts(engine, creator, reactor, clock, tenant_id):
    """An auto-reply cancels the no_reply timer; one that fires anyway must agree and stand down.
    (Here the strategy keeps the campaign running on an auto-reply instead of the default pause.)"""
    campaign_id = await start(
        creator, tenant_id, rule("no_reply_96h", "cancel_campaign"), rule("auto_reply", "schedule_next_step")
    )
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(HOUR)

    await reactor.on_engagement(s.event("auto_reply"))
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert s.key("no_reply_96h") in canceled_keys(commands)

    clock.advance(timedelta(hours=96))
    await reactor.on_timer(s.timer("no_reply_96h"))
    await assert_canceled_as_moot(engine, tenant_id, campaign_id, s.key("no_reply_96h"), "auto_reply came first")
    assert (await campaign_row(engine, campaign_id)).status == "active"
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == ["auto_reply", "no_reply_96h"]


async def test_no_open_48h_by_default_bumps_the_next_step_by_a_day(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    planned = (await step_rows(engine, campaign_id))[1].scheduled_at
    timer = by_kind(s.commands)["no_open_48h"]
    clock.advance(at(timer.fire_at) - clock.now())

    await reactor.on_timer(timer.payload)

    [moved] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert planned + DAY <= at(moved.fire_at) < planned + DAY + JITTER
    assert (await step_rows(engine, campaign_id))[1].scheduled_at == at(moved.fire_at)
    [decision] = await decisions(engine, tenant_id, campaign_id)
    assert (decision.trigger, decision.action, decision.result) == ("no_open_48h", "reschedule_step", "applied")


async def test_no_open_timer_after_an_open_does_nothing(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(HOUR)
    await reactor.on_engagement(s.event("open"))
    await drain_outbox(engine, tenant_id)
    before = await snapshot(engine, campaign_id)

    clock.advance(timedelta(hours=47))
    await reactor.on_timer(s.timer("no_open_48h"))

    await assert_canceled_as_moot(engine, tenant_id, campaign_id, s.key("no_open_48h"), "open came first")
    assert await snapshot(engine, campaign_id) == before
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == ["open", "no_open_48h"]


async def test_a_timeout_that_fires_after_its_campaign_ended_is_canceled_as_moot(
    engine, creator, reactor, clock, tenant_id
):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    await reactor.on_engagement(s.event("reply"))
    await drain_outbox(engine, tenant_id)

    clock.advance(timedelta(hours=48))
    await reactor.on_timer(s.timer("no_open_48h"))

    await assert_canceled_as_moot(engine, tenant_id, campaign_id, s.key("no_open_48h"), "the campaign is canceled")
    assert (await campaign_row(engine, campaign_id)).status == "canceled"


async def assert_canceled_as_moot(engine, tenant_id: str, campaign_id: str, key: str, why: str) -> None:  # type: ignore[no-untyped-def]
    """The planner asked the scheduler to mark the fired timer canceled, saying why, and the
    campaign's timeline says the same; the outbox holds nothing else."""
    [command] = timer_commands(await drain_outbox(engine, tenant_id))
    assert command.HasField("cancel")
    assert (command.cancel.key, command.cancel.reason, command.cancel.include_fired) == (key, f"moot: {why}", True)
    moot = [d for d in await decisions(engine, tenant_id, campaign_id) if d.source == key]
    assert [(d.action, d.result) for d in moot] == [("none", f"canceled as moot: {why}")]


@pytest.mark.parametrize("channel", ["call", "linkedin"])
async def test_a_task_step_arms_no_open_or_click_timeout(engine, creator, reactor, clock, tenant_id, channel):
    # A task is never opened: a no_open timeout after it would always fire and push the next
    # step back a day. Its reply timeout still holds (a task reported as replied settles it).
    plan = pb.Strategy(
        outreach_campaign=[
            pb.OutreachStep(type=channel, timing="Day 0", content="Ask about their roadmap"),
            pb.OutreachStep(type="email", timing="Day 2", subject="Following up", content="About {{product_name}}"),
            pb.OutreachStep(type="email", timing="Day 5", subject="Last note", content="Body"),
        ],
        adaptive_rules=[rule("no_click_72h", "cancel_campaign"), rule("no_reply_96h", "reschedule_step")],
    )
    created = await creator.create(request(tenant_id, strategy=plan))
    await drain_outbox(engine, tenant_id)

    task = await sent(engine, reactor, clock, tenant_id, created.campaign_id)
    assert set(by_kind(task.commands)) == {"step_due", "no_reply_96h"}

    # The email after it arms them all.
    email = await sent(engine, reactor, clock, tenant_id, created.campaign_id, step_index=1)
    assert set(by_kind(email.commands)) == {"step_due", "no_open_48h", "no_click_72h", "no_reply_96h"}
    assert await decisions(engine, tenant_id, created.campaign_id) == []
