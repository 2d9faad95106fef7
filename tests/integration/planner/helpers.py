"""Shared helpers for the planner's integration tests.

The planner is driven the way production drives it: the tests call `Reactor.on_timer`,
`on_outcome` and `on_engagement` with the serialized protobufs the scheduler, dispatcher and
events service would deliver, and read what the planner caused from its outbox (what the
relay would publish), decoded into scheduler and dispatcher commands. The CampaignService tests
serve the real dispatcher and events servicers in process (`owner_services`, `serve`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from openai import AsyncOpenAI
from sqlalchemy import Row, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import commands_pb2, scheduler_service_pb2
from dripiq_common.clock import Clock, ManualClock
from dripiq_common.windows import MAX_JITTER_SECONDS
from dripiq_planner.creating import CampaignCreator
from dripiq_planner.models import campaign_steps, contact_campaigns, outbox, rule_decisions
from dripiq_planner.owners import Owners
from dripiq_planner.planning import Planner
from dripiq_planner.reactor import Reactor
from dripiq_planner.strategist.openai_strategist import OpenAIStrategist
from dripiq_planner.strategist.template_strategist import TemplateStrategist
from dripiq_planner.tenant_settings import TenantSettingsService

# A Monday, 09:00 UTC.
T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
JITTER = timedelta(seconds=MAX_JITTER_SECONDS)
THREE_STEPS = ("Day 0", "Day 3", "Day 6")
NEW_YORK = ZoneInfo("America/New_York")

ALWAYS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5, 6, 7], start_hour=0, end_hour=24)
BUSINESS_HOURS = pb.SendWindow(weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17)


def inside_business_hours(moment: datetime) -> bool:
    local = moment.astimezone(NEW_YORK)
    return local.isoweekday() <= 5 and 9 <= local.hour < 17


def campaign_creator(engine: AsyncEngine, clock: Clock, owners: Owners | None = None) -> CampaignCreator:
    """Creates campaigns planned by the template strategist before the create answers."""
    return CampaignCreator(engine, clock, Planner(engine, TemplateStrategist(), owners), plan_inline=True)


# -- requests -------------------------------------------------------------------------------


def rule(trigger: str, action: str, **payload: Any) -> pb.AdaptiveRule:
    out = pb.AdaptiveRule(trigger=trigger, action=pb.RuleAction(type=action))
    out.action.payload.update(payload)
    return out


def strategy(*timings: str, rules: tuple[pb.AdaptiveRule, ...] | list[pb.AdaptiveRule] = ()) -> pb.Strategy:
    """An email strategy with one step per timing ("Day 0", "Day 3", ...) and the given rules."""
    return pb.Strategy(
        summary=f"{len(timings)} steps",
        outreach_campaign=[
            pb.OutreachStep(
                type="email",
                timing=timing,
                subject="Hi {{first_name}}" if i == 0 else f"Step {i}",
                content="About {{product_name}}" if i == 0 else f"Body {i}",
            )
            for i, timing in enumerate(timings)
        ],
        adaptive_rules=list(rules),
    )


def request(tenant_id: str, **overrides: Any) -> pb.CreateCampaignRequest:
    """A valid two-step request ("Day 0", "Day 3") that may send at any hour; override any field."""
    req = pb.CreateCampaignRequest(
        tenant_id=tenant_id,
        lead=pb.Lead(lead_id="lead-1", company_name="Acme"),
        contact=pb.Contact(contact_id="contact-1", email="ada@example.com", first_name="Ada"),
        product=pb.Product(product_id="product-1", name="Widget"),
        sender_identity_id="sender-1",
        send_window=ALWAYS,
        strategy=strategy("Day 0", "Day 3"),
    )
    for key, value in overrides.items():
        if isinstance(value, pb.SendWindow | pb.Strategy | pb.Contact | pb.Lead | pb.Product):
            getattr(req, key).CopyFrom(value)
        else:
            setattr(req, key, value)
    return req


def item(contact_id: str, **overrides: Any) -> pb.CreateCampaignRequest:
    """A batch item (tenant left empty) for its own contact."""
    overrides.setdefault(
        "contact", pb.Contact(contact_id=contact_id, email=f"{contact_id}@example.com", first_name=contact_id.title())
    )
    return request(overrides.pop("tenant_id", ""), **overrides)


# -- the outbox -----------------------------------------------------------------------------


async def drain_outbox(engine: AsyncEngine, tenant_id: str) -> list[tuple[str, bytes]]:
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


def raw_timer_commands(rows: list[tuple[str, bytes]]) -> list[commands_pb2.TimerCommand]:
    """Scheduler commands exactly as outboxed (a batch stays one command)."""
    out = []
    for subject, payload in rows:
        if subject.startswith("dripiq.scheduler.cmd."):
            command = commands_pb2.TimerCommand()
            command.ParseFromString(payload)
            out.append(command)
    return out


def timer_commands(rows: list[tuple[str, bytes]]) -> list[commands_pb2.TimerCommand]:
    """Scheduler commands, a batch of timers unrolled into one schedule command each."""
    return [single for command in raw_timer_commands(rows) for single in unrolled(command)]


def unrolled(command: commands_pb2.TimerCommand) -> list[commands_pb2.TimerCommand]:
    """A batch of timers or a list of operations as the single commands they stand for, in order."""
    kind = command.WhichOneof("command")
    if kind == "schedule_batch":
        return [
            commands_pb2.TimerCommand(tenant_id=command.tenant_id, schedule=t) for t in command.schedule_batch.timers
        ]
    if kind == "ops":  # TimerOps: several commands of one transaction, in order
        return [single for inner in command.ops.commands for single in unrolled(inner)]
    return [command]


def send_commands(rows: list[tuple[str, bytes]]) -> list[dispatcher_pb.SendMessageCommand]:
    out = []
    for subject, payload in rows:
        if subject.startswith("dripiq.dispatcher.send."):
            command = dispatcher_pb.SendMessageCommand()
            command.ParseFromString(payload)
            out.append(command)
    return out


def schedules(commands: list[commands_pb2.TimerCommand]) -> list[scheduler_service_pb2.Timer]:
    return [c.schedule for c in commands if c.HasField("schedule")]


def canceled_keys(commands: list[commands_pb2.TimerCommand]) -> list[str]:
    return [c.cancel.key for c in commands if c.HasField("cancel")]


def canceled_groups(commands: list[commands_pb2.TimerCommand]) -> list[str]:
    return [c.cancel_group.group_key for c in commands if c.HasField("cancel_group")]


def by_kind(commands: list[commands_pb2.TimerCommand]) -> dict[str, scheduler_service_pb2.Timer]:
    return {t.kind: t for t in schedules(commands)}


def at(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def within_jitter(actual: Timestamp | datetime, due: datetime) -> bool:
    moment = actual if isinstance(actual, datetime) else at(actual)
    return due <= moment < due + timedelta(seconds=MAX_JITTER_SECONDS)


# -- planner rows ---------------------------------------------------------------------------


async def step_rows(engine: AsyncEngine, campaign_id: str) -> list[Row]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    select(campaign_steps)
                    .where(campaign_steps.c.campaign_id == campaign_id)
                    .order_by(campaign_steps.c.step_index)
                )
            ).all()
        )


async def campaign_row(engine: AsyncEngine, campaign_id: str) -> Row:
    async with engine.connect() as conn:
        return (await conn.execute(select(contact_campaigns).where(contact_campaigns.c.id == campaign_id))).one()


async def decisions(engine: AsyncEngine, tenant_id: str, campaign_id: str | None = None) -> list[Row]:
    query = select(rule_decisions).where(rule_decisions.c.tenant_id == tenant_id)
    if campaign_id is not None:
        query = query.where(rule_decisions.c.campaign_id == campaign_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query.order_by(rule_decisions.c.id))).all())


async def count_campaigns(engine: AsyncEngine, tenant_id: str) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(func.count()).select_from(contact_campaigns).where(contact_campaigns.c.tenant_id == tenant_id)
            )
        ).scalar_one()


# -- what other services deliver ------------------------------------------------------------


def step_timer(tenant_id: str, campaign_id: str, step_index: int, version: int) -> bytes:
    return timers_pb2.PlannerTimer(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        step_due=timers_pb2.StepDue(step_index=step_index, schedule_version=version),
    ).SerializeToString()


def trigger_timer(tenant_id: str, campaign_id: str, message_id: str, step_index: int, trigger: str) -> bytes:
    return timers_pb2.PlannerTimer(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        trigger_due=timers_pb2.TriggerDue(message_id=message_id, step_index=step_index, trigger=trigger),
    ).SerializeToString()


def outcome(
    send: dispatcher_pb.SendMessageCommand,
    *,
    kind: int = dispatcher_pb.OUTCOME_KIND_SENT,
    occurred_at: datetime | None = None,
    reason: str = "",
    permanent: bool = False,
) -> bytes:
    fact = dispatcher_pb.MessageOutcome(
        permanent=permanent,
        tenant_id=send.tenant_id,
        message_id=send.message_id,
        campaign_id=send.campaign_id,
        step_index=send.step_index,
        contact_id=send.contact_id,
        channel=send.channel,
        kind=kind,
        provider="sendgrid",
        provider_message_id=f"x-{send.message_id[:8]}" if kind == dispatcher_pb.OUTCOME_KIND_SENT else "",
        reason=reason,
        to_email=send.to_email,
        subject=send.subject,
    )
    if occurred_at is not None:
        fact.occurred_at.FromDatetime(occurred_at)
    return fact.SerializeToString()


def engagement(
    tenant_id: str,
    campaign_id: str,
    message_id: str,
    step_index: int,
    event_type: str,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    **fields: Any,
) -> bytes:
    """An EngagementEvent as the events service publishes it."""
    event = events_pb.EngagementEvent(
        tenant_id=tenant_id,
        event_id=event_id or f"ev-{uuid.uuid4().hex[:12]}",
        message_id=message_id,
        campaign_id=campaign_id,
        step_index=step_index,
        event_type=event_type,
        **fields,
    )
    if occurred_at is not None:
        event.occurred_at.FromDatetime(occurred_at)
    return events_pb.EngagementBatch(events=[event]).SerializeToString()


# -- walking a campaign ---------------------------------------------------------------------


@dataclass
class Sent:
    """One step of a campaign, sent: its send command and what the SENT outcome outboxed."""

    tenant_id: str
    campaign_id: str
    step_index: int
    message_id: str
    sent_at: datetime
    send: dispatcher_pb.SendMessageCommand
    commands: list[commands_pb2.TimerCommand] = field(default_factory=list)
    outcome: bytes = b""

    def event(self, event_type: str, **fields: Any) -> bytes:
        return engagement(self.tenant_id, self.campaign_id, self.message_id, self.step_index, event_type, **fields)

    def timer(self, trigger: str) -> bytes:
        """The trigger timer the scheduler would fire for this message."""
        return trigger_timer(self.tenant_id, self.campaign_id, self.message_id, self.step_index, trigger)

    def key(self, trigger: str) -> str:
        return f"{self.message_id}:{trigger}"


async def scheduled_step(engine: AsyncEngine, campaign_id: str) -> Row:
    [step] = [s for s in await step_rows(engine, campaign_id) if s.status == "scheduled"]
    return step


async def fire_step(
    engine: AsyncEngine, reactor: Reactor, clock: ManualClock, tenant_id: str, campaign_id: str
) -> dispatcher_pb.SendMessageCommand:
    """Fire the campaign's armed step timer at its time (the clock moves there if it is behind)
    and return the send command it caused. Discards whatever the outbox held before."""
    await drain_outbox(engine, tenant_id)
    step = await scheduled_step(engine, campaign_id)
    if step.scheduled_at > clock.now():
        clock.advance(step.scheduled_at - clock.now())
    await reactor.on_timer(step_timer(tenant_id, campaign_id, step.step_index, step.schedule_version))
    [send] = [s for s in send_commands(await drain_outbox(engine, tenant_id)) if s.campaign_id == campaign_id]
    return send


async def sent(
    engine: AsyncEngine,
    reactor: Reactor,
    clock: ManualClock,
    tenant_id: str,
    campaign_id: str,
    step_index: int = 0,
    *,
    after: timedelta = timedelta(minutes=1),
) -> Sent:
    """Walk the campaign until step `step_index` is sent: fire each armed step timer and deliver
    a SENT outcome `after` it fired. `commands` holds the timer commands the last outcome caused."""
    for _ in range(25):
        send = await fire_step(engine, reactor, clock, tenant_id, campaign_id)
        clock.advance(after)
        fact = outcome(send, occurred_at=clock.now())
        await reactor.on_outcome(fact)
        commands = timer_commands(await drain_outbox(engine, tenant_id))
        if send.step_index >= step_index:
            assert send.step_index == step_index, f"step {step_index} was not the next to go out"
            return Sent(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                step_index=send.step_index,
                message_id=send.message_id,
                sent_at=clock.now(),
                send=send,
                commands=commands,
                outcome=fact,
            )
    raise AssertionError("the campaign never reached the step")


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


async def require_approval(tenant_settings: TenantSettingsService, tenant_id: str) -> None:
    """The tenant's new campaigns wait as drafts for a person's approval."""
    await tenant_settings.update(
        pb.UpdateTenantSettingsRequest(
            settings=pb.TenantSettings(tenant_id=tenant_id, require_approval=True),
            update_mask=FieldMask(paths=["require_approval"]),
        )
    )


def openai_strategist(url: str, **options: Any) -> OpenAIStrategist:
    """The OpenAI strategist against the fake OpenAI at `url`, the template as its fallback. The
    client never asks again by itself: the strategist does, when `retries` says so."""
    client = AsyncOpenAI(api_key="sk-test", base_url=url, max_retries=0, timeout=10.0)
    return OpenAIStrategist(client=client, model="gpt-4o-mini", fallback=TemplateStrategist(), **options)
