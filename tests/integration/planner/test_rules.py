"""The planner's adaptive rules on real PostgreSQL: every trigger, every action, the defaults,
machine opens, idempotency under redelivery, the decision log and send windows.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers import (
    BUSINESS_HOURS,
    DAY,
    T0,
    Sent,
    at,
    by_kind,
    campaign_creator,
    campaign_row,
    canceled_groups,
    canceled_keys,
    decisions,
    drain_outbox,
    engagement,
    fire_step,
    outcome,
    request,
    rule,
    schedules,
    send_commands,
    sent,
    step_rows,
    step_timer,
    strategy,
    timer_commands,
    within_jitter,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.reactor import Reactor

HOUR = timedelta(hours=1)
JITTER = timedelta(seconds=MAX_JITTER_SECONDS)
THREE_STEPS = ("Day 0", "Day 3", "Day 6")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def campaigns(engine: AsyncEngine, clock: ManualClock) -> CampaignService:
    return CampaignService(engine, clock)


@pytest.fixture
def creator(engine: AsyncEngine, clock: ManualClock) -> CampaignCreator:
    return campaign_creator(engine, clock)


@pytest.fixture
def reactor(engine: AsyncEngine, clock: ManualClock) -> Reactor:
    return Reactor(engine, clock)


async def start(
    creator: CampaignCreator,
    tenant_id: str,
    *rules: pb.AdaptiveRule,
    timings: tuple[str, ...] = THREE_STEPS,
    **overrides: object,
) -> str:
    """Create a campaign (three steps by default) with these rules; its outbox is drained."""
    created = await creator.create(request(tenant_id, strategy=strategy(*timings, rules=rules), **overrides))
    await drain_outbox(creator.engine, tenant_id)
    return created.campaign_id


async def statuses(engine: AsyncEngine, campaign_id: str) -> tuple[str, list[str]]:
    campaign = await campaign_row(engine, campaign_id)
    return campaign.status, [s.status for s in await step_rows(engine, campaign_id)]


async def snapshot(engine: AsyncEngine, campaign_id: str) -> tuple:
    """Everything the planner stores about a campaign and its steps."""
    return tuple(await campaign_row(engine, campaign_id)), [tuple(s) for s in await step_rows(engine, campaign_id)]


def step_due_of(timer) -> timers_pb2.StepDue:  # type: ignore[no-untyped-def]
    payload = timers_pb2.PlannerTimer.FromString(timer.payload)
    assert payload.WhichOneof("kind") == "step_due"
    return payload.step_due


async def walk(
    engine: AsyncEngine, creator: CampaignCreator, reactor: Reactor, clock: ManualClock, tenant_id: str, *rules
) -> Sent:
    """A three-step campaign with these rules, step 0 sent, an hour later."""
    campaign_id = await start(creator, tenant_id, *rules)
    step = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(HOUR)
    return step


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


# -- timeouts -------------------------------------------------------------------------------

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

    await reactor.on_engagement(s.event(settled_by))

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    expected = {
        "open": ["no_open_24h", "no_open_48h"],
        "click": ["no_click_72h", "no_open_24h", "no_open_48h"],
        "reply": ["no_reply_96h"],
    }
    assert sorted(canceled_keys(commands)) == sorted(s.key(t) for t in expected[settled_by])

    # The scheduler had already fired it: the timer re-checks its condition and stands down.
    clock.advance(timedelta(days=5))
    before = await snapshot(engine, campaign_id)
    await reactor.on_timer(s.timer(waited_for))
    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, campaign_id) == before
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == [settled_by]


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
    assert await drain_outbox(engine, tenant_id) == []
    assert (await campaign_row(engine, campaign_id)).status == "active"
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == ["auto_reply"]


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

    assert await drain_outbox(engine, tenant_id) == []
    assert await snapshot(engine, campaign_id) == before
    assert [d.trigger for d in await decisions(engine, tenant_id, campaign_id)] == ["open"]


# -- actions --------------------------------------------------------------------------------


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


# -- redelivery -----------------------------------------------------------------------------


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


# -- the decision log -----------------------------------------------------------------------


async def test_every_decision_is_recorded(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id, rule("no_click_72h", "schedule_next_step", delaySeconds=60))
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)

    clock.advance(HOUR)
    await reactor.on_engagement(s.event("delivered", event_id="d-1"))
    await reactor.on_engagement(s.event("open", event_id="o-1"))
    clock.advance(timedelta(hours=47))
    await reactor.on_timer(s.timer("no_open_48h"))  # settled by the open: no decision
    clock.advance(timedelta(hours=24))
    await reactor.on_timer(s.timer("no_click_72h"))
    await reactor.on_engagement(s.event("reply", event_id="r-1"))
    await reactor.on_engagement(s.event("click", event_id="c-1"))

    rows = await decisions(engine, tenant_id, campaign_id)
    assert [(d.trigger, d.source, d.action, d.result) for d in rows] == [
        ("delivered", "event:d-1", "none", "no rule"),
        ("open", "event:o-1", "schedule_next_step", "applied"),
        ("no_click_72h", s.key("no_click_72h"), "schedule_next_step", "applied"),
        ("reply", "event:r-1", "cancel_campaign", "applied"),
        ("click", "event:c-1", "schedule_next_step", "campaign canceled"),
    ]
    assert {(d.message_id, d.step_index, d.campaign_id) for d in rows} == {(s.message_id, 0, campaign_id)}
    assert rows[1].rule_json == {"type": "schedule_next_step", "payload": {"delaySeconds": [86400, 172800]}}
    assert (await campaign_row(engine, campaign_id)).status == "canceled"


# -- send windows ---------------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
# Friday 2030-03-08, 10:00 in New York; US daylight saving time starts on Sunday 2030-03-10.
FRIDAY_MORNING = datetime(2030, 3, 8, 15, 0, tzinfo=UTC)


def inside_business_hours(moment: datetime) -> bool:
    local = moment.astimezone(NEW_YORK)
    return local.isoweekday() <= 5 and 9 <= local.hour < 17


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


# -- outcomes and tenancy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (dispatcher_pb.OUTCOME_KIND_SUPPRESSED, "contact suppressed"),
        (dispatcher_pb.OUTCOME_KIND_FAILED, "send failed: 403 sender not verified"),
    ],
)
async def test_a_failed_send_cancels_the_campaign(engine, creator, reactor, clock, tenant_id, kind, reason):
    """Only a failure the message itself can never get past: a suppressed contact, or one the
    dispatcher calls permanent (an invalid address, a sender that may not send)."""
    campaign_id = await start(creator, tenant_id)
    send = await fire_step(engine, reactor, clock, tenant_id, campaign_id)

    failed = outcome(send, kind=kind, occurred_at=clock.now(), reason="403 sender not verified", permanent=True)
    await reactor.on_outcome(failed)
    await reactor.on_outcome(failed)

    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert canceled_groups(commands) == [f"campaign:{campaign_id}"]
    assert await statuses(engine, campaign_id) == ("canceled", ["failed", "canceled", "canceled"])
    assert (await campaign_row(engine, campaign_id)).cancel_reason == reason


async def test_the_last_step_sent_completes_the_campaign(engine, creator, reactor, clock, tenant_id):
    campaign_id = await start(creator, tenant_id, timings=("Day 0",))

    s = await sent(engine, reactor, clock, tenant_id, campaign_id)

    assert canceled_groups(s.commands) == [f"campaign:{campaign_id}"]
    assert schedules(s.commands) == [], "no timeouts for a campaign that is over"
    assert await statuses(engine, campaign_id) == ("completed", ["sent"])
    # A reply after the end is recorded against the ended campaign and changes nothing.
    await reactor.on_engagement(s.event("reply"))
    assert await drain_outbox(engine, tenant_id) == []
    [decision] = await decisions(engine, tenant_id, campaign_id)
    assert (decision.trigger, decision.result) == ("reply", "campaign completed")


async def test_handlers_never_touch_another_tenants_campaign(engine, creator, reactor, clock, tenant_id):
    s = await walk(engine, creator, reactor, clock, tenant_id)
    other = f"{tenant_id}-other"
    before = await snapshot(engine, s.campaign_id)
    step = (await step_rows(engine, s.campaign_id))[1]

    await reactor.on_engagement(engagement(other, s.campaign_id, s.message_id, 0, "reply", event_id="x-1"))
    await reactor.on_timer(step_timer(other, s.campaign_id, 1, step.schedule_version))

    assert await drain_outbox(engine, tenant_id) == [] and await drain_outbox(engine, other) == []
    assert await snapshot(engine, s.campaign_id) == before
    assert await decisions(engine, other) == [] and await decisions(engine, tenant_id) == []
