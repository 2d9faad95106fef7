"""The planner's adaptive rules on real PostgreSQL, engagement: what each engagement fact
triggers under the default rules and under a strategy's own, and when machine opens count.

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
    canceled_groups,
    canceled_keys,
    decisions,
    drain_outbox,
    rule,
    schedules,
    sent,
    snapshot,
    start,
    statuses,
    step_due_of,
    step_rows,
    timer_commands,
    walk,
    within_jitter,
)

from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_planner.reactor import Reactor

# -- engagement triggers with their default rules -------------------------------------------


async def test_open_by_default_schedules_the_next_step_in_one_to_two_days(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    before = (await step_rows(engine, s.campaign_id))[1]

    await reactor.on_engagement(s.event("open"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    [timer] = schedules(commands)
    assert timer.key == f"{s.campaign_id}:step" and timer.kind == "step_due"
    assert clock.now() + DAY <= at(timer.fire_at) < clock.now() + 2 * DAY + JITTER
    assert step_due_of(timer) == timers_pb2.StepDue(step_index=1, schedule_version=before.schedule_version + 1)
    assert canceled_keys(commands) == [s.key("no_open_48h")]
    step = (await step_rows(engine, s.campaign_id))[1]
    assert (step.status, step.scheduled_at) == ("scheduled", at(timer.fire_at))


async def test_a_late_open_never_postpones_the_next_step(engine, creator, reactor, clock, tenant_id):
    # Step 1 is due three days after step 0; an open 2.5 days after the send would, by the open
    # rule's one to two days, move it to day 3.5 or later. It stays where it was.
    campaign_id = await start(creator, tenant_id, timings=("Day 0", "Day 3", "Day 6"))
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    planned = (await step_rows(engine, campaign_id))[1]
    clock.advance(timedelta(days=2, hours=12))

    await reactor.on_engagement(s.event("open"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert schedules(commands) == []
    assert canceled_keys(commands) == [s.key("no_open_48h")]
    step = (await step_rows(engine, campaign_id))[1]
    assert (step.status, step.scheduled_at, step.schedule_version) == (
        "scheduled",
        planned.scheduled_at,
        planned.schedule_version,
    )
    [decision] = await decisions(engine, tenant_id, campaign_id)
    assert decision.trigger == "open" and decision.action == "schedule_next_step"
    assert decision.result.startswith("applied: step 1 kept at ")


async def test_an_early_open_brings_the_next_step_closer(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id, timings=("Day 0", "Day 7"))
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    planned = (await step_rows(engine, campaign_id))[1].scheduled_at
    clock.advance(HOUR)

    await reactor.on_engagement(s.event("open"))

    [timer] = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert clock.now() + DAY <= at(timer.fire_at) < clock.now() + 2 * DAY + JITTER < planned


async def test_one_message_carries_the_facts_of_many_campaigns(engine, creator, reactor, clock, tenant_id):
    first = await walk(engine, creator, reactor, clock, tenant_id)
    other = pb.Product(product_id="product-2", name="Gadget")
    second = await sent(engine, reactor, clock, tenant_id, await start(creator, tenant_id, product=other))
    await drain_outbox(engine, tenant_id)
    facts = [
        fact
        for data in (first.event("open"), second.event("open"), first.event("open"))
        for fact in events_pb.EngagementBatch.FromString(data).events
    ]

    await reactor.on_engagement(events_pb.EngagementBatch(events=facts).SerializeToString())

    timers = schedules(timer_commands(await drain_outbox(engine, tenant_id)))
    assert sorted(t.key for t in timers) == sorted([f"{first.campaign_id}:step", f"{second.campaign_id}:step"])


async def test_click_by_default_schedules_the_next_step_soon(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(s.event("click", url="https://acme.test/pricing"))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    [timer] = schedules(commands)
    assert step_due_of(timer).step_index == 1
    assert within_jitter(timer.fire_at, clock.now() + HOUR)
    # A click proves the open too (images may have been blocked): the no-open timeout goes.
    assert canceled_keys(commands) == [s.key("no_open_48h")]
    assert await statuses(engine, s.campaign_id) == ("active", ["sent", "scheduled", "pending"])


@pytest.mark.parametrize(
    ("event_type", "fields", "trigger"),
    [
        ("reply", {}, "reply"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {}, "unsubscribe"),
        ("bounce", {"reason": "550 5.1.1 user unknown"}, "bounce"),
        ("spamreport", {}, "spamreport"),
    ],
)
async def test_terminal_engagement_cancels_the_campaign_by_default(
    engine, creator, campaigns, reactor, clock, tenant_id, event_type, fields, trigger
):
    s = await walk(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(s.event(event_type, **fields))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert canceled_groups(commands) == [f"campaign:{s.campaign_id}"]
    assert schedules(commands) == []
    assert await statuses(engine, s.campaign_id) == ("canceled", ["sent", "canceled", "canceled"])
    campaign = await campaigns.get(tenant_id, s.campaign_id)
    assert campaign.cancel_reason == trigger
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert (decision.trigger, decision.action, decision.result) == (trigger, "cancel_campaign", "applied")


@pytest.mark.parametrize(
    ("event_type", "fields"),
    [
        ("bounce", {"reason": "blocked"}),  # a soft bounce: the address still exists
        ("processed", {}),
        ("deferred", {}),
        ("open", {"machine_open": True}),
    ],
)
async def test_engagement_that_stands_for_no_trigger_changes_nothing(
    engine, creator, reactor, clock, tenant_id, event_type, fields
):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    before = await snapshot(engine, s.campaign_id)

    await reactor.on_engagement(s.event(event_type, **fields))

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, s.campaign_id) == before
    assert await decisions(engine, tenant_id) == []


@pytest.mark.parametrize("event_type", ["delivered", "dropped"])
async def test_trigger_without_a_default_rule_is_recorded_and_changes_nothing(
    engine, creator, reactor, clock, tenant_id, event_type
):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    before = await snapshot(engine, s.campaign_id)

    await reactor.on_engagement(s.event(event_type, event_id="e-1"))

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, s.campaign_id) == before
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert (decision.trigger, decision.source, decision.action, decision.result) == (
        event_type,
        "event:e-1",
        "none",
        "no rule",
    )


@pytest.mark.parametrize(
    ("event_type", "fields", "trigger"),
    [
        ("open", {}, "open"),
        ("click", {}, "click"),
        ("reply", {}, "reply"),
        ("auto_reply", {}, "auto_reply"),
        ("unsubscribe", {}, "unsubscribe"),
        ("group_unsubscribe", {}, "unsubscribe"),
        ("bounce", {}, "bounce"),
        ("spamreport", {}, "spamreport"),
        ("dropped", {"reason": "Bounced Address"}, "dropped"),
        ("delivered", {}, "delivered"),
    ],
)
async def test_a_strategy_rule_for_a_trigger_applies(
    engine, creator, campaigns, reactor, clock, tenant_id, event_type, fields, trigger
):
    """The strategy's rule wins over the default (or applies where there is none)."""
    s = await walk(engine, creator, reactor, clock, tenant_id, rule(trigger, "complete_campaign", reason="done"))

    await reactor.on_engagement(s.event(event_type, **fields))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert canceled_groups(commands) == [f"campaign:{s.campaign_id}"]
    assert await statuses(engine, s.campaign_id) == ("completed", ["sent", "canceled", "canceled"])
    assert (await campaigns.get(tenant_id, s.campaign_id)).cancel_reason == "done"
    [decision] = await decisions(engine, tenant_id, s.campaign_id)
    assert (decision.trigger, decision.action, decision.result) == (trigger, "complete_campaign", "applied")


# -- machine opens --------------------------------------------------------------------------


@pytest.mark.parametrize("count_machine_opens", [False, True])
async def test_machine_opens_count_only_when_configured(engine, creator, clock, tenant_id, count_machine_opens):
    reactor = Reactor(engine, clock, count_machine_opens=count_machine_opens)
    s = await walk(engine, creator, reactor, clock, tenant_id)

    await reactor.on_engagement(s.event("open", machine_open=True))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    recorded = await decisions(engine, tenant_id, s.campaign_id)
    if count_machine_opens:
        assert [step_due_of(t).step_index for t in schedules(commands)] == [1]
        assert [(d.trigger, d.result) for d in recorded] == [("open", "applied")]
    else:
        assert commands == [] and recorded == []
