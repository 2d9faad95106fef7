"""A provider that cannot take the send now: the message is deferred to a scheduler timer with a
growing wait (inside the contact's send window) and fails only past the retry horizon, not for
good; which provider refusals are permanent. On real PostgreSQL and NATS against the fake
SendGrid over HTTP; "the worker retries" is calling the handler again with the timer's payload.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dispatch_support import RETRY, T0, command, identity, new_dispatcher, new_sender, outcomes, received, stored
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_dispatcher.models import outbox


def provider_calls(result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_dispatcher_provider_call_seconds_count", {"result": result}) or 0.0


async def deferred_timers(engine: AsyncEngine, tenant_id: str, message_id: str) -> list[Any]:
    """The scheduler timers the dispatcher asked for to bring this message back, oldest first."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload)
                .where(outbox.c.subject == Subjects.scheduler_command(tenant_id))
                .order_by(outbox.c.id)
            )
        ).all()
    commands = [commands_pb2.TimerCommand.FromString(p) for p in payloads]
    timers = [op.schedule for c in commands for op in (c.ops.commands if c.HasField("ops") else [c])]
    return [t for t in timers if t.key == f"{message_id}:deferred"]


async def test_unavailable_provider_is_retried_then_sent_once(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    fake.fail_next(503)
    calls = {r: provider_calls(r) for r in ("retry", "accepted", "permanent", "unknown")}

    # Nothing waits on JetStream: the delivery is done, and a scheduler timer brings it back.
    await dispatcher.handle_send(cmd.SerializeToString())
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("queued", 1)
    assert row.last_error == "sendgrid 503: service unavailable"
    [timer] = await deferred_timers(engine, tenant_id, cmd.message_id)
    assert timer.group_key == f"campaign:{cmd.campaign_id}" and timer.payload == cmd.SerializeToString()
    due = T0 + RETRY.base
    assert due <= timer.fire_at.ToDatetime(tzinfo=UTC) <= due + RETRY.base / 4
    [deferred] = await outcomes(engine, tenant_id)
    assert deferred.kind == messages_pb2.OUTCOME_KIND_DEFERRED and "sendgrid 503" in deferred.reason

    dispatcher.clock.advance(RETRY.base)  # type: ignore[attr-defined]
    await dispatcher.handle_send(timer.payload)

    assert len(received(fake, cmd.message_id)) == 1
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count, row.last_error) == ("sent", 2, None)
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [
        messages_pb2.OUTCOME_KIND_DEFERRED,
        messages_pb2.OUTCOME_KIND_SENT,
    ]
    # Operators see each call's time by result (dripiq_dispatcher_provider_call_seconds).
    assert {r: provider_calls(r) - calls[r] for r in calls} == {"retry": 1, "accepted": 1, "permanent": 0, "unknown": 0}


async def test_an_outage_longer_than_minutes_fails_only_at_the_horizon_and_not_for_good(
    engine, fake, dispatcher, tenant_id
):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    fake.fail_next(503, count=100)
    clock = dispatcher.clock
    waits = []
    try:
        for _ in range(20):
            await dispatcher.handle_send(cmd.SerializeToString())
            row = await stored(engine, cmd.message_id)
            if row.status != "queued":
                break
            timer = (await deferred_timers(engine, tenant_id, cmd.message_id))[-1]
            wait = timer.fire_at.ToDatetime(tzinfo=UTC) - clock.now()  # type: ignore[attr-defined]
            waits.append(wait)
            clock.advance(wait)  # type: ignore[attr-defined]
    finally:
        fake.clear_failures()

    # The wait doubles up to its cap; the message fails once it is past the horizon, and the
    # outcome says the failure is not the message's own: its campaign is not ended for it.
    assert all(later >= earlier for earlier, later in zip(waits, waits[1:], strict=False))
    assert RETRY.cap <= max(waits) <= RETRY.cap * 1.25
    assert clock.now() - T0 >= RETRY.horizon - RETRY.cap * 1.25  # type: ignore[attr-defined]
    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert row.status == "failed"
    assert row.last_error.startswith(f"gave up after {row.attempt_count} attempts over 0:10:00")
    [failed] = [f for f in await outcomes(engine, tenant_id) if f.kind == messages_pb2.OUTCOME_KIND_FAILED]
    assert failed.permanent is False


async def test_a_retry_lands_inside_the_contacts_send_window(engine, fake, sender, tenant_id):
    """Friday 16:59:50 in Paris, a window of weekdays 9-17: the retry 30 s later would fall
    after closing, so it comes back at Monday's opening (spread over its first minutes)."""
    paris = ZoneInfo("Europe/Paris")
    friday = datetime(2030, 1, 4, 16, 59, 50, tzinfo=paris)
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.clock = ManualClock(friday.astimezone(UTC))
    window = messages_pb2.ContactWindow(weekdays=[1, 2, 3, 4, 5], start_hour=9, end_hour=17, time_zone="Europe/Paris")
    cmd = command(tenant_id, await identity(engine, tenant_id), send_window=window)
    fake.fail_next(503)

    await dispatcher.handle_send(cmd.SerializeToString())

    [timer] = await deferred_timers(engine, tenant_id, cmd.message_id)
    back = timer.fire_at.ToDatetime(tzinfo=UTC).astimezone(paris)
    monday = datetime(2030, 1, 7, 9, 0, tzinfo=paris)
    assert monday <= back < monday + timedelta(minutes=15)


async def test_a_provider_refusal_of_the_message_is_permanent_and_of_our_key_is_not(
    engine, fake, dispatcher, tenant_id
):
    ident = await identity(engine, tenant_id)
    bad, unauthorized = (command(tenant_id, ident) for _ in range(2))
    fake.fail_next(400)
    await dispatcher.handle_send(bad.SerializeToString())
    fake.fail_next(401)
    await dispatcher.handle_send(unauthorized.SerializeToString())

    facts = {f.message_id: f for f in await outcomes(engine, tenant_id)}
    assert (facts[bad.message_id].kind, facts[bad.message_id].permanent) == (messages_pb2.OUTCOME_KIND_FAILED, True)
    assert (facts[unauthorized.message_id].kind, facts[unauthorized.message_id].permanent) == (
        messages_pb2.OUTCOME_KIND_FAILED,
        False,
    )


async def test_unreachable_provider_is_retried(engine, tenant_id):
    closed = new_sender("http://127.0.0.1:9", concurrency=1, timeout_seconds=2)
    try:
        cmd = command(tenant_id, await identity(engine, tenant_id))
        await new_dispatcher(engine, closed).handle_send(cmd.SerializeToString())
    finally:
        await closed.aclose()

    row = await stored(engine, cmd.message_id)
    assert row.status == "queued" and row.last_error.startswith("sendgrid unreachable:")
    assert len(await deferred_timers(engine, tenant_id, cmd.message_id)) == 1
