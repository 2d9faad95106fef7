"""The planner's half of "stop means stop": every change of a campaign's status is published
(CampaignStatusChanged, from the outbox, with a growing version) for the dispatcher, and a step
the dispatcher withheld because the campaign had stopped is closed, held for the resume, or
sent again shortly, as the campaign's status by then says."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    T0,
    campaign_creator,
    campaign_row,
    canceled_keys,
    drain_outbox,
    engagement,
    fire_step,
    outcome,
    request,
    schedules,
    send_commands,
    sent,
    step_rows,
    step_timer,
    strategy,
    timer_commands,
)

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import facts_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.errors import FailedPrecondition
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.outcomes import WITHHELD_RETRY_SECONDS
from dripiq_planner.reactor import Reactor


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def campaigns(engine, clock) -> CampaignService:  # type: ignore[no-untyped-def]
    return CampaignService(engine, clock)


@pytest.fixture
def creator(engine, clock) -> CampaignCreator:  # type: ignore[no-untyped-def]
    return campaign_creator(engine, clock)


@pytest.fixture
def reactor(engine, clock) -> Reactor:  # type: ignore[no-untyped-def]
    return Reactor(engine, clock, max_auto_reply_pause_days=30)


def status_facts(rows: list[tuple[str, bytes]], tenant_id: str) -> list[facts_pb2.CampaignStatusChanged]:
    return [
        facts_pb2.CampaignStatusChanged.FromString(payload)
        for subject, payload in rows
        if subject == Subjects.campaign_status(tenant_id)
    ]


async def created(engine, creator, tenant_id: str) -> str:  # type: ignore[no-untyped-def]
    campaign = await creator.create(request(tenant_id, strategy=strategy("Day 0", "Day 3", "Day 6")))
    await drain_outbox(engine, tenant_id)
    return campaign.campaign_id


async def test_every_change_of_status_is_published_with_a_growing_version(engine, creator, campaigns, clock, tenant_id):
    cid = await created(engine, creator, tenant_id)

    await campaigns.pause(tenant_id, cid, 0)
    paused = status_facts(await drain_outbox(engine, tenant_id), tenant_id)
    await campaigns.resume(tenant_id, cid)
    resumed = status_facts(await drain_outbox(engine, tenant_id), tenant_id)
    await campaigns.cancel(tenant_id, cid, "changed our mind")
    canceled = status_facts(await drain_outbox(engine, tenant_id), tenant_id)

    assert [(f.campaign_id, f.status, f.version, f.reason) for f in paused + resumed + canceled] == [
        (cid, "paused", 1, ""),
        (cid, "active", 2, ""),
        (cid, "canceled", 3, "changed our mind"),
    ]
    assert canceled[0].occurred_at.ToDatetime().replace(tzinfo=T0.tzinfo) == clock.now()
    assert (await campaign_row(engine, cid)).pause_version == 3


async def test_a_reply_between_the_timer_and_the_send_closes_the_withheld_step(
    engine, creator, reactor, clock, tenant_id
):
    cid = await created(engine, creator, tenant_id)
    first = await sent(engine, reactor, clock, tenant_id, cid)
    # Step 1's timer fires: its command is on its way to the dispatcher...
    follow_up = await fire_step(engine, reactor, clock, tenant_id, cid)
    # ...when the reply to step 0 ends the campaign.
    await reactor.on_engagement(first.event("reply"))
    [fact] = status_facts(await drain_outbox(engine, tenant_id), tenant_id)
    assert (fact.status, fact.reason) == ("canceled", "reply")

    # The dispatcher, which heard of it first, withheld the command.
    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_WITHHELD, reason="campaign canceled"))

    steps = {s.step_index: s.status for s in await step_rows(engine, cid)}
    assert steps == {0: "sent", 1: "canceled", 2: "canceled"}
    assert await drain_outbox(engine, tenant_id) == []


async def test_a_step_withheld_while_paused_goes_out_with_the_same_message_id_on_resume(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    cid = await created(engine, creator, tenant_id)
    await sent(engine, reactor, clock, tenant_id, cid)
    follow_up = await fire_step(engine, reactor, clock, tenant_id, cid)
    await campaigns.pause(tenant_id, cid, 0)
    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_WITHHELD, reason="campaign paused"))
    [step] = [s for s in await step_rows(engine, cid) if s.step_index == 1]
    assert step.status == "scheduled"
    # Held: no step timer while paused.
    assert not [t for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))) if t.kind == "step_due"]

    clock.advance(timedelta(hours=2))
    await campaigns.resume(tenant_id, cid)
    [timer] = [t for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))) if t.kind == "step_due"]
    assert timer.fire_at.ToDatetime().replace(tzinfo=T0.tzinfo) - clock.now() < timedelta(minutes=5)
    [step] = [s for s in await step_rows(engine, cid) if s.step_index == 1]
    await reactor.on_timer(step_timer(tenant_id, cid, 1, step.schedule_version))
    [again] = send_commands(await drain_outbox(engine, tenant_id))
    assert again.message_id == follow_up.message_id


async def test_a_step_withheld_after_the_campaign_resumed_goes_out_shortly(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    cid = await created(engine, creator, tenant_id)
    await sent(engine, reactor, clock, tenant_id, cid)
    follow_up = await fire_step(engine, reactor, clock, tenant_id, cid)
    # Paused and resumed at once; the dispatcher judged the command between the two facts.
    await campaigns.pause(tenant_id, cid, 0)
    await campaigns.resume(tenant_id, cid)
    await drain_outbox(engine, tenant_id)

    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_WITHHELD, reason="campaign paused"))

    [timer] = [t for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))) if t.kind == "step_due"]
    due = clock.now() + timedelta(seconds=WITHHELD_RETRY_SECONDS)
    assert due <= timer.fire_at.ToDatetime().replace(tzinfo=T0.tzinfo) < due + timedelta(minutes=15)
    assert (await campaign_row(engine, cid)).status == "active"


async def test_an_engagement_of_another_campaign_changes_nothing_here(engine, creator, reactor, tenant_id):
    cid = await created(engine, creator, tenant_id)
    await reactor.on_engagement(engagement(tenant_id, "other-campaign", "m-1", 0, "reply"))
    assert status_facts(await drain_outbox(engine, tenant_id), tenant_id) == []
    assert (await campaign_row(engine, cid)).status == "active"


# -- a failure that is not the message's own: the campaign waits for a person ------------------


async def test_a_passing_failure_holds_the_campaign_for_a_person_then_retry_sends_a_new_message(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    cid = await created(engine, creator, tenant_id)
    await sent(engine, reactor, clock, tenant_id, cid)
    follow_up = await fire_step(engine, reactor, clock, tenant_id, cid)
    reason = "gave up after 14 attempts over 6:00:00: sendgrid 503: service unavailable"

    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_FAILED, reason=reason))
    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_FAILED, reason=reason))

    row = await campaign_row(engine, cid)
    assert (row.status, row.attention_reason, row.cancel_reason) == ("needs_attention", f"step 1 failed: {reason}", "")
    shown = await campaigns.get(tenant_id, cid)
    assert (shown.status, shown.attention_reason) == (pb.CAMPAIGN_STATUS_NEEDS_ATTENTION, f"step 1 failed: {reason}")
    rows = await drain_outbox(engine, tenant_id)
    [fact] = status_facts(rows, tenant_id)
    assert (fact.status, fact.reason) == ("needs_attention", f"step 1 failed: {reason}")
    assert canceled_keys(timer_commands(rows)) == [f"{cid}:step"]
    assert {s.step_index: s.status for s in await step_rows(engine, cid)} == {0: "sent", 1: "failed", 2: "pending"}

    # Only a campaign that needs attention has a step to retry.
    other = await created(engine, creator, f"{tenant_id}-b")
    with pytest.raises(FailedPrecondition):
        await campaigns.retry_step(f"{tenant_id}-b", other)

    clock.advance(timedelta(hours=7))
    retried = await campaigns.retry_step(tenant_id, cid)
    assert (retried.status, retried.attention_reason) == (pb.CAMPAIGN_STATUS_ACTIVE, "")
    [timer] = [t for t in schedules(timer_commands(await drain_outbox(engine, tenant_id))) if t.kind == "step_due"]
    assert timer.fire_at.ToDatetime().replace(tzinfo=T0.tzinfo) - clock.now() < timedelta(minutes=15)
    [step] = [s for s in await step_rows(engine, cid) if s.step_index == 1]
    await reactor.on_timer(step_timer(tenant_id, cid, 1, step.schedule_version))
    [again] = send_commands(await drain_outbox(engine, tenant_id))
    # A new message id: the dispatcher settled the first as failed and would not send it again.
    assert again.message_id != follow_up.message_id and again.step_index == 1

    # A late outcome of the first attempt finds no step of its own.
    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_SENT))
    assert {s.step_index: s.status for s in await step_rows(engine, cid)}[1] == "sending"


async def test_resume_retries_too_and_a_reply_still_ends_a_campaign_that_needs_attention(
    engine, creator, campaigns, reactor, clock, tenant_id
):
    cid = await created(engine, creator, tenant_id)
    await sent(engine, reactor, clock, tenant_id, cid)
    follow_up = await fire_step(engine, reactor, clock, tenant_id, cid)
    await reactor.on_outcome(outcome(follow_up, kind=dispatcher_pb.OUTCOME_KIND_FAILED, reason="sendgrid 401"))
    assert (await campaign_row(engine, cid)).status == "needs_attention"

    resumed = await campaigns.resume(tenant_id, cid)
    assert resumed.status == pb.CAMPAIGN_STATUS_ACTIVE
    [step] = [s for s in await step_rows(engine, cid) if s.step_index == 1]
    assert (step.status, step.message_id != follow_up.message_id) == ("scheduled", True)

    other = await created(engine, creator, f"{tenant_id}-b")
    other_first = await sent(engine, reactor, clock, f"{tenant_id}-b", other)
    other_follow_up = await fire_step(engine, reactor, clock, f"{tenant_id}-b", other)
    await reactor.on_outcome(outcome(other_follow_up, kind=dispatcher_pb.OUTCOME_KIND_FAILED, reason="sendgrid 401"))
    await reactor.on_engagement(other_first.event("reply"))
    row = await campaign_row(engine, other)
    assert (row.status, row.cancel_reason) == ("canceled", "reply")
