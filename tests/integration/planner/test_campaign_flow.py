"""Planner on real PostgreSQL: create, step due, sent, engagement rules, cancel, redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import AlreadyExists, InvalidArgument, NotFound
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.models import outbox
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.windows import MAX_JITTER_SECONDS

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)


def request(tenant_id: str, **overrides) -> pb.CreateCampaignRequest:  # type: ignore[no-untyped-def]
    req = pb.CreateCampaignRequest(
        tenant_id=tenant_id,
        lead=pb.Lead(lead_id="lead-1", company_name="Acme"),
        contact=pb.Contact(contact_id="contact-1", email="ada@example.com", first_name="Ada"),
        product=pb.Product(product_id="product-1", name="Widget"),
        sender_identity_id="sender-1",
        send_window=ALWAYS,
        strategy=pb.Strategy(
            summary="two steps",
            outreach_campaign=[
                pb.OutreachStep(
                    type="email", timing="Day 0", subject="Hi {{first_name}}", content="About {{product_name}}"
                ),
                pb.OutreachStep(type="email", timing="Day 3", subject="Following up", content="Again"),
            ],
        ),
    )
    for key, value in overrides.items():
        setattr(req, key, value)
    return req


async def drain_outbox(engine, tenant_id: str) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    """Take this tenant's outbox rows (what the relay would publish), oldest first."""
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(outbox.c.id, outbox.c.subject, outbox.c.payload)
                .where(outbox.c.subject.like(f"%.{tenant_id}%"))
                .order_by(outbox.c.id)
            )
        ).all()
        await conn.execute(delete(outbox).where(outbox.c.id.in_([r.id for r in rows])))
    return [(r.subject, r.payload) for r in rows]


def timer_commands(rows: list[tuple[str, bytes]]) -> list[commands_pb2.TimerCommand]:
    """Scheduler commands, a batch of timers unrolled into one schedule command each."""
    out = []
    for subject, payload in rows:
        if subject.startswith("dripiq.scheduler.cmd."):
            command = commands_pb2.TimerCommand()
            command.ParseFromString(payload)
            if command.HasField("schedule_batch"):
                out += [
                    commands_pb2.TimerCommand(tenant_id=command.tenant_id, schedule=t)
                    for t in command.schedule_batch.timers
                ]
            else:
                out.append(command)
    return out


def within_jitter(actual, due: datetime) -> bool:  # type: ignore[no-untyped-def]
    moment = actual.ToDatetime(tzinfo=UTC)
    return due <= moment < due + timedelta(seconds=MAX_JITTER_SECONDS)


ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)


def send_commands(rows: list[tuple[str, bytes]]) -> list[dispatcher_pb.SendMessageCommand]:
    out = []
    for subject, payload in rows:
        if subject.startswith("dripiq.dispatcher.send."):
            command = dispatcher_pb.SendMessageCommand()
            command.ParseFromString(payload)
            out.append(command)
    return out


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def test_walks_a_campaign_through_send_open_and_reply(engine, tenant_id, clock):
    campaigns, reactor = CampaignService(engine, clock, TemplateStrategist()), Reactor(engine, clock)
    campaign = await campaigns.create(request(tenant_id))
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
    await reactor.on_engagement(open_event.SerializeToString())
    await reactor.on_engagement(open_event.SerializeToString())
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
    await reactor.on_engagement(reply.SerializeToString())
    commands = timer_commands(await drain_outbox(engine, tenant_id))
    assert [c.cancel_group.group_key for c in commands if c.HasField("cancel_group")] == [
        f"campaign:{campaign.campaign_id}"
    ]
    final = await campaigns.get(tenant_id, campaign.campaign_id)
    assert final.status == pb.CAMPAIGN_STATUS_CANCELED
    assert final.cancel_reason == "reply"
    assert [s.status for s in final.steps] == [pb.STEP_STATUS_SENT, pb.STEP_STATUS_CANCELED]


async def test_machine_opens_do_not_count(engine, tenant_id, clock):
    campaigns, reactor = CampaignService(engine, clock, TemplateStrategist()), Reactor(engine, clock)
    campaign = await campaigns.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)
    event = events_pb.EngagementEvent(
        tenant_id=tenant_id,
        event_id="m1",
        message_id="m",
        campaign_id=campaign.campaign_id,
        event_type="open",
        machine_open=True,
    )
    await reactor.on_engagement(event.SerializeToString())
    assert await drain_outbox(engine, tenant_id) == []


async def test_stale_step_timer_is_ignored(engine, tenant_id, clock):
    campaigns, reactor = CampaignService(engine, clock, TemplateStrategist()), Reactor(engine, clock)
    campaign = await campaigns.create(request(tenant_id))
    await drain_outbox(engine, tenant_id)
    stale = timers_pb2.PlannerTimer(
        tenant_id=tenant_id,
        campaign_id=campaign.campaign_id,
        step_due=timers_pb2.StepDue(step_index=0, schedule_version=99),
    )
    await reactor.on_timer(stale.SerializeToString())
    assert await drain_outbox(engine, tenant_id) == []


async def test_request_id_makes_create_idempotent_and_a_second_campaign_is_refused(engine, tenant_id, clock):
    campaigns = CampaignService(engine, clock, TemplateStrategist())
    first = await campaigns.create(request(tenant_id, request_id="r-1"))
    again = await campaigns.create(request(tenant_id, request_id="r-1"))
    assert again.campaign_id == first.campaign_id
    with pytest.raises(AlreadyExists) as exc:
        await campaigns.create(request(tenant_id, request_id="r-2"))
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
        await CampaignService(engine, clock, TemplateStrategist()).create(req)
    assert exc.value.field == field
