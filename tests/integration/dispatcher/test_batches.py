"""The dispatcher's batch send path on real PostgreSQL against the fake SendGrid over HTTP.

`handle_sends` is called directly with the bytes of a fetched JetStream batch and answers one
entry per command: None to ack it, or the error its delivery fails with. "The worker retries"
is calling it again with the same bytes, as a redelivery would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta

import pytest_asyncio
from dispatch_support import (
    T0,
    command,
    identity,
    new_dispatcher,
    new_sender,
    outcomes,
    rate_limits_of,
    received,
    stored,
)
from test_rate_limits import sent_ids, timer_commands

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.provider import MailSender
from dripiq_dispatcher.suppressions import Suppressions

SENT = messages_pb2.OUTCOME_KIND_SENT
DEFERRED = messages_pb2.OUTCOME_KIND_DEFERRED


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[MailSender]:
    pool = new_sender(fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


def kinds(facts: list[messages_pb2.MessageOutcome]) -> dict[str, int]:
    """Each message's outcome kind; fails on a message with two outcomes."""
    found: dict[str, int] = {}
    for fact in facts:
        assert fact.message_id not in found, f"two outcomes for {fact.message_id}"
        found[fact.message_id] = fact.kind
    return found


async def test_mixed_batch_answers_each_command_on_its_own(engine, fake, sender, tenant_id):
    other = f"{tenant_id}-x"
    taken = command(other, await identity(engine, other))
    await new_dispatcher(engine, sender).handle_send(taken.SerializeToString())  # the other tenant's, first
    kicks: list[int] = []
    dispatcher = new_dispatcher(engine, sender, kicks)
    verified, unverified = await identity(engine, tenant_id), await identity(engine, tenant_id, verified=False)
    await Suppressions(engine, ManualClock(T0)).add(tenant_id, "gone@example.com", "")
    good = [command(tenant_id, verified, to_email=f"ada{n}@example.com") for n in range(3)]
    suppressed = command(tenant_id, verified, to_email="Gone@Example.com")
    unusable = command(tenant_id, unverified)
    stolen = command(tenant_id, verified, message_id=taken.message_id)
    batch = [
        good[0].SerializeToString(),
        suppressed.SerializeToString(),
        good[1].SerializeToString(),
        unusable.SerializeToString(),
        good[0].SerializeToString(),  # the same message id twice: one send
        b"\xff\xff",
        stolen.SerializeToString(),
        good[2].SerializeToString(),
    ]

    results = await dispatcher.handle_sends(batch)

    assert len(results) == len(batch)
    assert [i for i, r in enumerate(results) if r is None] == [0, 1, 2, 3, 4, 7]
    assert isinstance(results[5], PermanentMessageError) and "undecodable SendMessageCommand" in str(results[5])
    assert isinstance(results[6], PermanentMessageError) and "another tenant" in str(results[6])

    mails = {}
    for cmd in good:
        [mails[cmd.message_id]] = received(fake, cmd.message_id)
        row = await stored(engine, cmd.message_id)
        assert (row.status, row.attempt_count, row.sent_at) == ("sent", 1, T0)
        assert row.provider_message_id == mails[cmd.message_id].x_message_id
        assert mails[cmd.message_id].to_emails == [cmd.to_email]
    assert received(fake, suppressed.message_id) == received(fake, unusable.message_id) == []
    row = await stored(engine, suppressed.message_id)
    assert (row.status, row.last_error, row.attempt_count) == ("suppressed", "address suppressed: manual", 0)
    row = await stored(engine, unusable.message_id)
    assert (row.status, row.attempt_count) == ("failed", 0)
    assert unverified in row.last_error and "is not verified" in row.last_error
    # The other tenant's message is untouched, and was sent once, by its own command.
    row = await stored(engine, taken.message_id)
    assert (row.tenant_id, row.status, row.attempt_count) == (other, "sent", 1)
    assert len(received(fake, taken.message_id)) == 1

    facts = await outcomes(engine, tenant_id)
    assert kinds(facts) == {
        **{c.message_id: SENT for c in good},
        suppressed.message_id: messages_pb2.OUTCOME_KIND_SUPPRESSED,
        unusable.message_id: messages_pb2.OUTCOME_KIND_FAILED,
    }
    by_id = {f.message_id: f for f in facts}
    assert by_id[suppressed.message_id].reason == "address suppressed: manual"
    assert by_id[unusable.message_id].reason == (await stored(engine, unusable.message_id)).last_error
    for cmd in good:
        fact = by_id[cmd.message_id]
        assert fact.provider_message_id == mails[cmd.message_id].x_message_id
        assert fact.rfc_message_id == f"<{cmd.message_id}@mid.test>"
    assert [f.kind for f in await outcomes(engine, other)] == [SENT]
    assert kicks == [1]  # one wake-up for the whole batch


async def test_redelivered_batch_sends_nothing_again(engine, fake, sender, tenant_id):
    kicks: list[int] = []
    dispatcher = new_dispatcher(engine, sender, kicks)
    verified, unverified = await identity(engine, tenant_id), await identity(engine, tenant_id, verified=False)
    await Suppressions(engine, ManualClock(T0)).add(tenant_id, "gone@example.com", "")
    cmds = [
        command(tenant_id, verified),
        command(tenant_id, verified, to_email="gone@example.com"),
        command(tenant_id, unverified),
        command(tenant_id, verified, subject=""),  # invalid: failed with an outcome
        command(tenant_id, verified),
    ]
    batch = [c.SerializeToString() for c in cmds]
    assert await dispatcher.handle_sends(batch) == [None] * len(batch)
    statuses = [(await stored(engine, c.message_id)).status for c in cmds]
    assert statuses == ["sent", "suppressed", "failed", "failed", "sent"]
    facts = await outcomes(engine, tenant_id)
    requests, accepted = fake.requests_received, len(fake.messages)

    assert await dispatcher.handle_sends(batch) == [None] * len(batch)
    assert await dispatcher.handle_sends(list(reversed(batch))) == [None] * len(batch)

    assert (fake.requests_received, len(fake.messages)) == (requests, accepted)
    rows = [await stored(engine, c.message_id) for c in cmds]
    assert [(r.status, r.attempt_count) for r in rows] == list(zip(statuses, [1, 0, 0, 0, 1], strict=True))
    assert await outcomes(engine, tenant_id) == facts
    assert kicks == [1]  # the redeliveries wrote no outcome


async def test_rate_limit_admits_a_batch_up_to_the_budget(engine, fake, sender, tenant_id):
    other = f"{tenant_id}-b"
    dispatcher = new_dispatcher(engine, sender)
    for tenant in (tenant_id, other):
        await rate_limits_of(dispatcher).set_rate_limit(pb.RateLimit(tenant_id=tenant, channel="email", per_minute=3))
    cmds = [command(tenant_id, await identity(engine, tenant_id)) for _ in range(5)]
    ids = [c.message_id for c in cmds]
    # The copy of the first command takes no budget of its own.
    batch = [cmds[0].SerializeToString()] + [c.SerializeToString() for c in cmds]

    assert await dispatcher.handle_sends(batch) == [None] * len(batch)

    assert sent_ids(fake, ids) == ids[:3]
    assert all(len(received(fake, i)) == 1 for i in ids[:3])
    deferred = ids[3:]
    for message_id in deferred:
        row = await stored(engine, message_id)
        assert (row.status, row.attempt_count) == ("queued", 0)
        assert row.last_error.startswith(f"deferred: tenant:{tenant_id}:email minute budget spent until ")
    facts = await outcomes(engine, tenant_id)
    assert kinds(facts) == {**{i: SENT for i in ids[:3]}, **{i: DEFERRED for i in deferred}}
    assert all(f.reason.startswith("deferred: ") for f in facts if f.kind == DEFERRED)
    # One scheduler command for the batch, carrying a timer per deferred message.
    [scheduled] = await timer_commands(engine, tenant_id)
    assert scheduled.tenant_id == tenant_id and scheduled.WhichOneof("command") == "ops"
    timers = [op.schedule for op in scheduled.ops.commands]
    assert [t.key for t in timers] == [f"{i}:deferred" for i in deferred]
    for timer, cmd in zip(timers, cmds[3:], strict=True):
        assert (timer.tenant_id, timer.kind, timer.group_key) == (
            tenant_id,
            "send_deferred",
            f"campaign:{cmd.campaign_id}",
        )
        assert timer.target == scheduler_service_pb2.TIMER_TARGET_DISPATCHER_SEND
        assert timer.payload == cmd.SerializeToString()
        assert T0 + timedelta(minutes=1) <= timer.fire_at.ToDatetime(tzinfo=UTC) < T0 + timedelta(minutes=2)

    # Another tenant's batch in the same minute has its own budget.
    others = [command(other, await identity(engine, other)) for _ in range(3)]
    assert await dispatcher.handle_sends([c.SerializeToString() for c in others]) == [None] * 3
    other_ids = [c.message_id for c in others]
    assert sent_ids(fake, other_ids) == other_ids
    assert await timer_commands(engine, other) == []

    # The timers fire a minute later: their payloads come back as one batch and are sent.
    dispatcher.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    assert await dispatcher.handle_sends([t.payload for t in timers]) == [None, None]
    assert sent_ids(fake, ids) == ids
    assert all(len(received(fake, i)) == 1 for i in ids)
    assert await timer_commands(engine, tenant_id) == [scheduled]


async def test_transient_failures_retry_only_their_own_commands(engine, fake, sender, tenant_id):
    dispatcher = new_dispatcher(engine, sender)
    cmds = [command(tenant_id, await identity(engine, tenant_id)) for _ in range(5)]
    batch = [c.SerializeToString() for c in cmds]
    fake.fail_next(503, count=2)

    # Every delivery is done: the two that met a failure come back through scheduler timers.
    assert await dispatcher.handle_sends(batch) == [None] * len(batch)

    # Which two calls met the failures depends on the order the requests arrived in.
    retried = [c for c in cmds if not received(fake, c.message_id)]
    assert len(retried) == 2
    for cmd in cmds:
        row = await stored(engine, cmd.message_id)
        if cmd in retried:
            assert (row.status, row.attempt_count, row.last_error) == ("queued", 1, "sendgrid 503: service unavailable")
        else:
            assert (row.status, row.attempt_count, len(received(fake, cmd.message_id))) == ("sent", 1, 1)
    timers = [t.schedule for t in await timer_commands(engine, tenant_id) if t.HasField("schedule")] + [
        op.schedule for t in await timer_commands(engine, tenant_id) if t.HasField("ops") for op in t.ops.commands
    ]
    assert sorted(t.key for t in timers) == sorted(f"{c.message_id}:deferred" for c in retried)

    # The timers fire (with the acked ones delivered again too): each is sent once.
    dispatcher.clock.advance(timedelta(minutes=1))  # type: ignore[attr-defined]
    assert await dispatcher.handle_sends(batch) == [None] * len(batch)
    for cmd in cmds:
        row = await stored(engine, cmd.message_id)
        assert (row.status, row.attempt_count) == ("sent", 2 if cmd in retried else 1)
        assert len(received(fake, cmd.message_id)) == 1
    settled = [f for f in await outcomes(engine, tenant_id) if f.kind != messages_pb2.OUTCOME_KIND_DEFERRED]
    assert kinds(settled) == {c.message_id: SENT for c in cmds}


async def test_one_message_id_from_two_tenants_in_one_batch_refuses_the_second(engine, fake, sender, tenant_id):
    other = f"{tenant_id}-x"
    mine = command(tenant_id, await identity(engine, tenant_id))
    theirs = command(other, await identity(engine, other), message_id=mine.message_id)

    results = await new_dispatcher(engine, sender).handle_sends([mine.SerializeToString(), theirs.SerializeToString()])

    # As when the two come one by one: the first is sent, the second never touches it.
    assert len(received(fake, mine.message_id)) == 1
    assert (await stored(engine, mine.message_id)).tenant_id == tenant_id
    assert results[0] is None
    assert isinstance(results[1], PermanentMessageError) and "another tenant" in str(results[1])


async def test_batches_holding_the_same_new_ids_in_opposite_orders_never_deadlock(engine, fake, sender, tenant_id):
    """Redeliveries can reach two batches (two workers or replicas) in different orders: both
    must go through, one waiting for the other, and each message goes out once."""
    verified = await identity(engine, tenant_id)
    ids: list[str] = []
    for _ in range(3):
        cmds = [command(tenant_id, verified, to_email=f"lead{n}@example.com") for n in range(60)]
        ids += [c.message_id for c in cmds]
        batch = [c.SerializeToString() for c in cmds]
        dispatcher = new_dispatcher(engine, sender)

        first, second = await asyncio.gather(dispatcher.handle_sends(batch), dispatcher.handle_sends(batch[::-1]))

        assert first == [None] * len(batch) and second == [None] * len(batch)
    assert all(len(received(fake, message_id)) == 1 for message_id in ids)
    assert {(await stored(engine, message_id)).status for message_id in ids} == {"sent"}
