"""Rate limits and fairness: a tenant's budget per channel and a mailbox's own caps, counted
in PostgreSQL so every replica sees them; a send past a budget stays `queued`, tells the
planner it was deferred, and comes back through a scheduler timer instead of waiting here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import grpc
import pytest
import pytest_asyncio
from dispatch_support import (
    T0,
    TEST_ACCOUNT,
    command,
    identity,
    new_dispatcher,
    outcomes,
    rate_limits_of,
    received,
    sender_identities,
    stored,
)
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_support import dispatcher_api, violated_fields
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import commands_pb2, scheduler_service_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.failures import RetryPolicy
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.provider import AsyncSendGridSender
from dripiq_dispatcher.sending import Sends


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[AsyncSendGridSender]:
    pool = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


async def timer_commands(engine: AsyncEngine, tenant_id: str) -> list[commands_pb2.TimerCommand]:
    async with engine.connect() as conn:
        payloads = (
            (
                await conn.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.subject == Subjects.scheduler_command(tenant_id))
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    return [commands_pb2.TimerCommand.FromString(p) for p in payloads]


def sent_ids(fake: FakeSendGrid, ids: list[str]) -> list[str]:
    return [i for i in ids if received(fake, i)]


async def test_tenant_budget_defers_the_rest_and_never_delays_another_tenant(engine, fake, sender, tenant_id):
    other = f"{tenant_id}-b"
    limited = new_dispatcher(engine, sender)
    await rate_limits_of(limited).set_rate_limit(pb.RateLimit(tenant_id=tenant_id, channel="email", per_minute=3))
    a_identity, b_identity = await identity(engine, tenant_id), await identity(engine, other)
    a_cmds = [command(tenant_id, a_identity) for _ in range(10)]
    b_cmds = [command(other, b_identity) for _ in range(10)]

    for a, b in zip(a_cmds, b_cmds, strict=True):
        await limited.handle_send(a.SerializeToString())
        await limited.handle_send(b.SerializeToString())

    a_ids = [c.message_id for c in a_cmds]
    assert sent_ids(fake, a_ids) == a_ids[:3]
    assert sent_ids(fake, [c.message_id for c in b_cmds]) == [c.message_id for c in b_cmds]
    assert await timer_commands(engine, other) == []

    deferred = a_ids[3:]
    for message_id in deferred:
        row = await stored(engine, message_id)
        assert (row.status, row.attempt_count) == ("queued", 0)
        assert row.last_error.startswith(f"deferred: tenant:{tenant_id}:email minute budget spent until ")
    facts = [f for f in await outcomes(engine, tenant_id) if f.kind == messages_pb2.OUTCOME_KIND_DEFERRED]
    assert [f.message_id for f in facts] == deferred
    assert all(f.reason.startswith("deferred: ") for f in facts)

    timers = await timer_commands(engine, tenant_id)
    assert [t.schedule.key for t in timers] == [f"{i}:deferred" for i in deferred]
    by_id = {c.message_id: c for c in a_cmds}
    for cmd in timers:
        timer = cmd.schedule
        message_id = timer.key.removesuffix(":deferred")
        assert cmd.tenant_id == timer.tenant_id == tenant_id
        assert timer.group_key == "campaign:camp-1"  # ending the campaign cancels it
        assert timer.kind == "send_deferred"
        assert timer.target == scheduler_service_pb2.TIMER_TARGET_DISPATCHER_SEND
        assert T0 + timedelta(minutes=1) <= timer.fire_at.ToDatetime(tzinfo=UTC) < T0 + timedelta(minutes=2)
        assert messages_pb2.SendMessageCommand.FromString(timer.payload) == by_id[message_id]
    assert len({t.schedule.fire_at.ToNanoseconds() for t in timers}) > 1  # jittered, not one instant

    # The timers fire a minute later: the same bytes come back through the consumer.
    limited.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    for cmd in timers:
        await limited.handle_send(cmd.schedule.payload)
    assert sent_ids(fake, a_ids) == a_ids[:6]
    for message_id in a_ids[6:]:
        assert (await stored(engine, message_id)).status == "queued"
    rearmed = (await timer_commands(engine, tenant_id))[len(timers) :]
    assert [t.schedule.key for t in rearmed] == [f"{i}:deferred" for i in a_ids[6:]]
    assert all(
        T0 + timedelta(minutes=2) <= t.schedule.fire_at.ToDatetime(tzinfo=UTC) < T0 + timedelta(minutes=3)
        for t in rearmed
    )

    # A redelivered command of a message already sent never calls again, and takes no budget.
    before = len(fake.messages)
    await limited.handle_send(a_cmds[0].SerializeToString())
    await limited.handle_send(timers[0].schedule.payload)
    assert len(fake.messages) == before
    assert len(received(fake, a_ids[3])) == 1


async def test_mailbox_cap_applies_across_campaigns(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    identities = sender_identities(engine, ManualClock(T0))
    mailbox = await identity(engine, tenant_id)
    updated = await identities.update(
        pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(tenant_id=tenant_id, sender_identity_id=mailbox, per_minute=2),
            update_mask=FieldMask(paths=["per_minute"]),
        )
    )
    assert (updated.per_minute, updated.per_day, updated.from_name) == (2, 0, "Acme")
    first = [command(tenant_id, mailbox, campaign_id="camp-1") for _ in range(2)]
    second = [command(tenant_id, mailbox, campaign_id="camp-2") for _ in range(2)]

    for cmd in (first[0], second[0], first[1], second[1]):
        await dispatcher.handle_send(cmd.SerializeToString())

    assert sent_ids(fake, [c.message_id for c in first + second]) == [first[0].message_id, second[0].message_id]
    row = await stored(engine, second[1].message_id)
    assert row.status == "queued"
    assert row.last_error.startswith(f"deferred: identity:{mailbox} minute budget spent until ")
    assert len(await timer_commands(engine, tenant_id)) == 2


async def test_full_tenant_window_gives_back_what_it_took(engine, fake, sender, tenant_id):
    """A send refused by one budget does not use up another: the mailbox's budget stays whole."""
    dispatcher = new_dispatcher(engine, sender)
    await rate_limits_of(dispatcher).set_rate_limit(pb.RateLimit(tenant_id=tenant_id, channel="email", per_day=1))
    mailbox = await identity(engine, tenant_id)
    await sender_identities(engine, ManualClock(T0)).update(
        pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(tenant_id=tenant_id, sender_identity_id=mailbox, per_minute=2),
            update_mask=FieldMask(paths=["per_minute"]),
        )
    )
    cmds = [command(tenant_id, mailbox) for _ in range(3)]
    for cmd in cmds:
        await dispatcher.handle_send(cmd.SerializeToString())
    assert sent_ids(fake, [c.message_id for c in cmds]) == [cmds[0].message_id]
    assert "day budget spent" in (await stored(engine, cmds[2].message_id)).last_error

    # The tenant's day is raised: the mailbox still has its second send of the minute.
    await rate_limits_of(dispatcher).set_rate_limit(pb.RateLimit(tenant_id=tenant_id, channel="email", per_day=10))
    await dispatcher.handle_send(cmds[1].SerializeToString())
    await dispatcher.handle_send(cmds[2].SerializeToString())
    assert sent_ids(fake, [c.message_id for c in cmds]) == [cmds[0].message_id, cmds[1].message_id]
    assert "identity:" in (await stored(engine, cmds[2].message_id)).last_error


@pytest_asyncio.fixture(scope="module")
async def api(engine, sender: AsyncSendGridSender) -> AsyncIterator[pb_grpc.DispatcherServiceStub]:
    clock = ManualClock(T0)
    dispatcher = Sends(engine, clock, sender, None, None, RetryPolicy())  # type: ignore[arg-type]
    async with dispatcher_api(engine, dispatcher, clock) as chan:
        yield pb_grpc.DispatcherServiceStub(chan)


async def test_set_and_get_rate_limit(api, tenant_id):
    unset = (await api.GetRateLimit(pb.GetRateLimitRequest(tenant_id=tenant_id, channel="email"))).rate_limit
    assert (unset.tenant_id, unset.channel, unset.per_minute, unset.per_hour, unset.per_day) == (
        tenant_id,
        "email",
        0,
        0,
        0,
    )
    given = pb.RateLimit(tenant_id=tenant_id, channel="email", per_minute=5, per_hour=100, per_day=1000)
    assert (await api.SetRateLimit(pb.SetRateLimitRequest(rate_limit=given))).rate_limit == given
    assert (await api.GetRateLimit(pb.GetRateLimitRequest(tenant_id=tenant_id, channel="email"))).rate_limit == given
    lowered = pb.RateLimit(tenant_id=tenant_id, channel="email", per_day=10)
    await api.SetRateLimit(pb.SetRateLimitRequest(rate_limit=lowered))
    assert (await api.GetRateLimit(pb.GetRateLimitRequest(tenant_id=tenant_id, channel="email"))).rate_limit == lowered


@pytest.mark.parametrize(
    ("limit", "field"),
    [
        (pb.RateLimit(tenant_id="bad tenant", channel="email"), "rate_limit.tenant_id"),
        (pb.RateLimit(tenant_id="t-ok", channel="sms"), "rate_limit.channel"),
        (pb.RateLimit(tenant_id="t-ok", channel="email", per_minute=-1), "rate_limit.per_minute"),
        (pb.RateLimit(tenant_id="t-ok", channel="email", per_hour=-1), "rate_limit.per_hour"),
        (pb.RateLimit(tenant_id="t-ok", channel="email", per_day=-5), "rate_limit.per_day"),
    ],
)
async def test_set_rate_limit_names_the_bad_field(api, limit, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await api.SetRateLimit(pb.SetRateLimitRequest(rate_limit=limit))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == [field]


async def test_get_rate_limit_names_the_bad_field(api, tenant_id):
    for request, field in (
        (pb.GetRateLimitRequest(tenant_id="", channel="email"), "tenant_id"),
        (pb.GetRateLimitRequest(tenant_id=tenant_id, channel="sms"), "channel"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.GetRateLimit(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(caught.value) == [field]


async def test_a_provider_429_comes_back_when_its_budget_resets(engine, tenant_id):
    """SendGrid's X-RateLimit-Reset says when: the send goes back through the scheduler for
    then, instead of spending deliveries on the consumer's backoff."""
    async with FakeSendGrid(clock=lambda: T0.timestamp() + 60, authenticated_domains=TEST_ACCOUNT) as limited:
        limited.fail_next(429)
        provider = AsyncSendGridSender(api_key="SG.test", host=limited.url, concurrency=2, timeout_seconds=5)
        try:
            dispatcher = new_dispatcher(engine, provider)
            cmd = command(tenant_id, await identity(engine, tenant_id))
            await dispatcher.handle_send(cmd.SerializeToString())  # no RetryLater: the delivery is acked
        finally:
            await provider.aclose()

    row = await stored(engine, cmd.message_id)
    assert row.status == "queued" and row.attempt_count == 1
    [deferred] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    assert deferred.kind == messages_pb2.OUTCOME_KIND_DEFERRED and "provider rate limit" in deferred.reason
    [timer] = [c.schedule for c in await timer_commands(engine, tenant_id) if c.schedule.key.startswith(cmd.message_id)]
    reset = T0 + timedelta(seconds=61)
    assert reset <= timer.fire_at.ToDatetime(tzinfo=UTC) < reset + timedelta(seconds=30)
    assert timer.payload == cmd.SerializeToString()
