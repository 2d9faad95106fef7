"""The planner's adaptive rules on real PostgreSQL, send outcomes and tenancy: a send that can
never go cancels the campaign, the last step sent completes it, and the handlers never touch
another tenant's campaign.

Handlers get the bytes JetStream would deliver; what they cause is read from the outbox.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers import (
    campaign_row,
    canceled_groups,
    decisions,
    drain_outbox,
    engagement,
    fire_step,
    outcome,
    schedules,
    sent,
    snapshot,
    start,
    statuses,
    step_rows,
    step_timer,
    timer_commands,
    walk,
)

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb


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


@pytest.mark.parametrize(
    ("reason", "permanent", "status", "said"),
    [
        # SendGrid will never deliver to the address: the campaign ends.
        ("Bounced Address", True, "canceled", "send failed: dropped by SendGrid: Bounced Address"),
        # The message or our account is at fault: a person looks before anything else goes.
        ("Spam Content", False, "needs_attention", "step 0 failed: dropped by SendGrid: Spam Content"),
    ],
)
async def test_a_message_sendgrid_dropped_after_it_was_sent_fails_its_step(
    engine, creator, reactor, clock, tenant_id, reason, permanent, status, said
):
    campaign_id = await start(creator, tenant_id)
    s = await sent(engine, reactor, clock, tenant_id, campaign_id)
    clock.advance(timedelta(seconds=5))

    dropped = outcome(
        s.send,
        kind=dispatcher_pb.OUTCOME_KIND_FAILED,
        occurred_at=clock.now(),
        reason=f"dropped by SendGrid: {reason}",
        permanent=permanent,
    )
    await reactor.on_outcome(dropped)
    await reactor.on_outcome(dropped)  # redelivered: the step is failed already

    row = await campaign_row(engine, campaign_id)
    assert row.status == status
    assert said in (row.cancel_reason or row.attention_reason or "")
    assert [step.status for step in await step_rows(engine, campaign_id)][0] == "failed"
    if permanent:
        assert canceled_groups(timer_commands(await drain_outbox(engine, tenant_id))) == [f"campaign:{campaign_id}"]


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
