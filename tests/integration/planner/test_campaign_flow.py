"""Planner on real PostgreSQL: create, step due, sent, engagement rules, cancel, redelivery."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from helpers import T0, campaign_creator, drain_outbox, request, send_commands, timer_commands, within_jitter

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import AlreadyExists, InvalidArgument, NotFound
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.reactor import Reactor


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def test_walks_a_campaign_through_send_open_and_reply(engine, tenant_id, clock):
    creator, campaigns, reactor = (
        campaign_creator(engine, clock),
        CampaignService(engine, clock),
        Reactor(engine, clock),
    )
    campaign = await creator.create(request(tenant_id))
    assert campaign.status == pb.CAMPAIGN_STATUS_ACTIVE
    assert [s.relative_delay_seconds for s in campaign.steps] == [0, 3 * 86400]

    [schedule] = timer_commands(await drain_outbox(engine, tenant_id))
    assert schedule.schedule.key == f"{campaign.campaign_id}:step"
    assert within_jitter(schedule.schedule.fire_at, T0)

    # The scheduler fires the step-0 timer (twice: JetStream is at-least-once).
    await reactor.on_timer(schedule.schedule.payload)
    await reactor.on_timer(schedule.schedule.payload)
    [send] = send_commands(await drain_outbox(engine, tenant_id))
    assert (send.to_email, send.subject, send.step_index) == ("ada@example.com", "Hi Ada", 0)
    assert send.body_text.startswith("About Widget")

    sent_at = T0 + timedelta(minutes=1)
    outcome = dispatcher_pb.MessageOutcome(
        tenant_id=tenant_id,
        message_id=send.message_id,
        campaign_id=campaign.campaign_id,
        step_index=0,
        kind=dispatcher_pb.OUTCOME_KIND_SENT,
        provider_message_id="x1",
    )
    outcome.occurred_at.FromDatetime(sent_at)
    await reactor.on_outcome(outcome.SerializeToString())
    await reactor.on_outcome(outcome.SerializeToString())
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    by_kind = {c.schedule.kind: c.schedule for c in commands}
    assert within_jitter(by_kind["step_due"].fire_at, sent_at + timedelta(days=3))
    assert by_kind["no_open_48h"].key == f"{send.message_id}:no_open_48h"
    assert by_kind["no_open_48h"].fire_at.ToDatetime(tzinfo=UTC) == sent_at + timedelta(hours=48)
    assert len(commands) == 2

    clock.advance(timedelta(hours=2))
    open_event = events_pb.EngagementEvent(
        tenant_id=tenant_id,
        event_id="e1",
        message_id=send.message_id,
        campaign_id=campaign.campaign_id,
        step_index=0,
        event_type="open",
    )
    await reactor.on_engagement(events_pb.EngagementBatch(events=[open_event]).SerializeToString())
    await reactor.on_engagement(events_pb.EngagementBatch(events=[open_event]).SerializeToString())
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    rescheduled = [c.schedule for c in commands if c.HasField("schedule")]
    canceled = [c.cancel.key for c in commands if c.HasField("cancel")]
    assert len(rescheduled) == 1, "a redelivered open applies once"
    fire_at = rescheduled[0].fire_at.ToDatetime(tzinfo=UTC)
    assert clock.now() + timedelta(days=1) <= fire_at <= clock.now() + timedelta(days=2, seconds=MAX_JITTER_SECONDS)
    assert canceled == [f"{send.message_id}:no_open_48h"]

    reply = events_pb.EngagementEvent(
        tenant_id=tenant_id,
        event_id="e2",
        message_id=send.message_id,
        campaign_id=campaign.campaign_id,
        step_index=0,
        event_type="reply",
    )
    await reactor.on_engagement(events_pb.EngagementBatch(events=[reply]).SerializeToString())
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert [c.cancel_group.group_key for c in commands if c.HasField("cancel_group")] == [
        f"campaign:{campaign.campaign_id}"
    ]
    final = await campaigns.get(tenant_id, campaign.campaign_id)
    assert final.status == pb.CAMPAIGN_STATUS_CANCELED
    assert final.cancel_reason == "reply"
    assert [s.status for s in final.steps] == [pb.STEP_STATUS_SENT, pb.STEP_STATUS_CANCELED]


async def test_machine_opens_do_not_count(engine, tenant_id, clock):
    creator, reactor = campaign_creator(engine, clock), Reactor(engine, clock)
    campaign = await creator.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)
    event = events_pb.EngagementEvent(
        tenant_id=tenant_id,
        event_id="m1",
        message_id="m",
        campaign_id=campaign.campaign_id,
        event_type="open",
        machine_open=True,
    )
    await reactor.on_engagement(events_pb.EngagementBatch(events=[event]).SerializeToString())
    assert await drain_outbox(engine, tenant_id) == []


async def test_stale_step_timer_is_ignored(engine, tenant_id, clock):
    creator, reactor = campaign_creator(engine, clock), Reactor(engine, clock)
    campaign = await creator.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)
    stale = timers_pb2.PlannerTimer(
        tenant_id=tenant_id,
        campaign_id=campaign.campaign_id,
        step_due=timers_pb2.StepDue(step_index=0, schedule_version=99),
    )
    await reactor.on_timer(stale.SerializeToString())
    assert await drain_outbox(engine, tenant_id) == []


async def test_request_id_makes_create_idempotent_and_a_second_campaign_is_refused(engine, tenant_id, clock):
    creator, campaigns = campaign_creator(engine, clock), CampaignService(engine, clock)
    first = await creator.create(request(tenant_id, request_id="r-1"))
    again = await creator.create(request(tenant_id, request_id="r-1"))
    assert again.campaign_id == first.campaign_id
    with pytest.raises(AlreadyExists) as exc:
        await creator.create(request(tenant_id, request_id="r-2"))
    assert first.campaign_id in str(exc.value)
    with pytest.raises(NotFound):
        await campaigns.get("another-tenant", first.campaign_id)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: setattr(r, "tenant_id", ""), "tenant_id"),
        (lambda r: setattr(r, "sender_identity_id", ""), "sender_identity_id"),
        (lambda r: setattr(r.contact, "email", "not-an-email"), "contact.email"),
        (lambda r: setattr(r.contact, "time_zone", "Mars/Base"), "contact.time_zone"),
        (
            lambda r: setattr(r.strategy.outreach_campaign[1], "timing", "soonish"),
            "strategy.outreachCampaign[1].timing",
        ),
        (lambda r: setattr(r.strategy.outreach_campaign[0], "type", "fax"), "strategy.outreachCampaign[0].type"),
        (
            lambda r: (
                setattr(r.strategy.outreach_campaign[1], "timing", "Day 0")
                or setattr(r.strategy.outreach_campaign[0], "timing", "Day 2")
            ),
            "strategy.outreachCampaign[1].timing",
        ),
    ],
)
async def test_invalid_requests_name_the_field(engine, tenant_id, clock, mutate, field):
    req = request(tenant_id)
    mutate(req)
    with pytest.raises(InvalidArgument) as exc:
        await campaign_creator(engine, clock).create(req)
    assert exc.value.field == field
