"""Stop means stop: once the dispatcher has heard that a campaign stopped (CampaignStatusChanged
from the planner), no email of it goes out, whatever was in flight: a command queued on the
stream, a send deferred by a budget, a step whose timer fired just before a reply ended the
campaign. A resumed campaign sends the same message again. Real PostgreSQL, the fake SendGrid
over HTTP; the handlers are called with the bytes JetStream would deliver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from dispatch_support import T0, command, identity, new_dispatcher, outcomes, rate_limits_of, received, stored
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_rate_limits import timer_commands
from waiting import eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.planner.v1 import facts_pb2
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.campaigns import CampaignStates
from dripiq_dispatcher.messages import Messages
from dripiq_dispatcher.models import campaign_states, messages
from dripiq_dispatcher.provider import AsyncSendGridSender


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[AsyncSendGridSender]:
    pool = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=8, timeout_seconds=5)
    yield pool
    await pool.aclose()


def status_fact(tenant_id: str, campaign_id: str, status: str, version: int, reason: str = "") -> bytes:
    fact = facts_pb2.CampaignStatusChanged(
        tenant_id=tenant_id, campaign_id=campaign_id, status=status, version=version, reason=reason
    )
    fact.occurred_at.FromDatetime(T0)
    return fact.SerializeToString()


async def campaign_state(engine: AsyncEngine, tenant_id: str, campaign_id: str) -> tuple[str, int] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(campaign_states.c.status, campaign_states.c.version).where(
                    campaign_states.c.tenant_id == tenant_id, campaign_states.c.campaign_id == campaign_id
                )
            )
        ).first()
    return (row.status, row.version) if row else None


async def stored_or_none(engine: AsyncEngine, message_id: str) -> str | None:
    async with engine.connect() as conn:
        return await conn.scalar(select(messages.c.status).where(messages.c.message_id == message_id))


def kinds(facts: list[messages_pb2.MessageOutcome], message_id: str) -> list[int]:
    return [f.kind for f in facts if f.message_id == message_id]


async def test_a_command_queued_before_the_cancel_is_withheld_not_sent(engine, fake, sender, tenant_id):
    dispatcher, states = new_dispatcher(engine, sender), CampaignStates(engine, ManualClock(T0))
    cmd = command(tenant_id, await identity(engine, tenant_id), campaign_id=f"camp-{uuid.uuid4().hex[:6]}")
    # The planner canceled the campaign (a reply) after the step's command was queued.
    await states.handle([status_fact(tenant_id, cmd.campaign_id, "canceled", 3, "reply")])

    await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.last_error, row.attempt_count) == ("withheld", "campaign canceled: reply", 0)
    [fact] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    assert (fact.kind, fact.reason) == (messages_pb2.OUTCOME_KIND_WITHHELD, "campaign canceled: reply")
    # The API says so too.
    assert (
        await Messages(dispatcher.engine).get_message(tenant_id, cmd.message_id)
    ).status == pb.MESSAGE_STATUS_WITHHELD
    # A redelivery is judged again, and withheld again.
    await dispatcher.handle_send(cmd.SerializeToString())
    assert received(fake, cmd.message_id) == []


async def test_another_campaign_and_another_tenant_still_send(engine, fake, sender, tenant_id):
    dispatcher, states = new_dispatcher(engine, sender), CampaignStates(engine, ManualClock(T0))
    ident = await identity(engine, tenant_id)
    stopped = command(tenant_id, ident, campaign_id="camp-stopped")
    running = command(tenant_id, ident, campaign_id="camp-running")
    other_tenant = f"{tenant_id}-b"
    elsewhere = command(other_tenant, await identity(engine, other_tenant), campaign_id="camp-stopped")
    await states.handle([status_fact(tenant_id, "camp-stopped", "paused", 1)])

    await dispatcher.handle_sends([c.SerializeToString() for c in (stopped, running, elsewhere)])

    assert received(fake, stopped.message_id) == []
    for cmd in (running, elsewhere):
        assert len(received(fake, cmd.message_id)) == 1


async def test_a_resumed_campaign_sends_the_withheld_message(engine, fake, sender, tenant_id):
    dispatcher, states = new_dispatcher(engine, sender), CampaignStates(engine, ManualClock(T0))
    cmd = command(tenant_id, await identity(engine, tenant_id), campaign_id="camp-paused")
    await states.handle([status_fact(tenant_id, "camp-paused", "paused", 1)])
    await dispatcher.handle_send(cmd.SerializeToString())
    assert (await stored(engine, cmd.message_id)).status == "withheld"

    # Resumed (version 2): the planner sends the same message id again.
    await states.handle([status_fact(tenant_id, "camp-paused", "active", 2)])
    await dispatcher.handle_send(cmd.SerializeToString())

    assert len(received(fake, cmd.message_id)) == 1
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count, row.last_error) == ("sent", 1, None)
    assert kinds(await outcomes(engine, tenant_id), cmd.message_id) == [
        messages_pb2.OUTCOME_KIND_WITHHELD,
        messages_pb2.OUTCOME_KIND_SENT,
    ]


async def test_the_newest_status_wins_whatever_order_the_facts_come_in(engine, tenant_id):
    states = CampaignStates(engine, ManualClock(T0))
    await states.handle([status_fact(tenant_id, "camp-x", "paused", 1)])
    # Resumed then canceled, delivered backwards, the cancel also twice.
    await states.handle(
        [
            status_fact(tenant_id, "camp-x", "canceled", 3, "bounce"),
            status_fact(tenant_id, "camp-x", "active", 2),
            status_fact(tenant_id, "camp-x", "canceled", 3, "bounce"),
        ]
    )
    assert await campaign_state(engine, tenant_id, "camp-x") == ("canceled", 3)
    await states.handle([status_fact(tenant_id, "camp-x", "active", 2)])
    assert await campaign_state(engine, tenant_id, "camp-x") == ("canceled", 3)
    # A fact that names no tenant or campaign changes nothing and stops nothing.
    assert await states.handle([status_fact("", "camp-x", "active", 9), status_fact(tenant_id, "", "active", 9)]) == 0


async def test_a_deferred_send_belongs_to_its_campaign_and_is_withheld_when_it_comes_back(
    engine, fake, sender, tenant_id
):
    dispatcher, states = new_dispatcher(engine, sender), CampaignStates(engine, ManualClock(T0))
    await rate_limits_of(dispatcher).set_rate_limit(pb.RateLimit(tenant_id=tenant_id, channel="email", per_minute=1))
    ident = await identity(engine, tenant_id)
    first, deferred = (command(tenant_id, ident, campaign_id="camp-deferred") for _ in range(2))
    await dispatcher.handle_sends([first.SerializeToString(), deferred.SerializeToString()])
    [timer] = [
        t.schedule for t in await timer_commands(engine, tenant_id) if t.schedule.key.startswith(deferred.message_id)
    ]
    # In the campaign's timer group: the planner's cancel of the group cancels it too.
    assert timer.group_key == "campaign:camp-deferred"

    # Had the cancel of the group not reached the scheduler in time, the timer fires anyway:
    # the campaign ended meanwhile, and nothing goes out.
    await states.handle([status_fact(tenant_id, "camp-deferred", "canceled", 1, "unsubscribe")])
    dispatcher.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    await dispatcher.handle_send(timer.payload)

    assert len(received(fake, first.message_id)) == 1
    assert received(fake, deferred.message_id) == []
    assert (await stored(engine, deferred.message_id)).status == "withheld"


async def test_a_stop_during_a_batch_holds_every_command_admitted_after_it(engine, fake, sender, tenant_id):
    """A batch whose admission read the campaign before the stop was recorded was first: it
    goes out (the planner schedules nothing after it). Every command admitted after is held."""
    dispatcher, states = new_dispatcher(engine, sender), CampaignStates(engine, ManualClock(T0))
    ident = await identity(engine, tenant_id)
    early = [command(tenant_id, ident, campaign_id="camp-race") for _ in range(5)]
    late = [command(tenant_id, ident, campaign_id="camp-race") for _ in range(5)]
    fake.latency_seconds = 0.5
    try:
        in_flight = asyncio.create_task(dispatcher.handle_sends([c.SerializeToString() for c in early]))
        # The stop arrives while the early batch waits on the provider.

        async def admitted() -> bool:
            return all([(await stored_or_none(engine, c.message_id)) == "sending" for c in early])

        await eventually(admitted, "the early batch admitted", every=0.01)
        await states.handle([status_fact(tenant_id, "camp-race", "canceled", 1, "reply")])
        await dispatcher.handle_sends([c.SerializeToString() for c in late])
        await in_flight
    finally:
        fake.latency_seconds = 0.0

    assert all(len(received(fake, c.message_id)) == 1 for c in early)
    assert all(received(fake, c.message_id) == [] for c in late)
    assert {(await stored(engine, c.message_id)).status for c in late} == {"withheld"}
