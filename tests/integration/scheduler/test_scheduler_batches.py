"""Batches: timers stored in one statement (repository.schedule_many) keep the rules of one
timer at a time, whatever the batch holds, overlapping batches side by side; firing rounds in
flight at once (Firer.rounds_in_flight) fire each timer once, a firer dying mid-round included."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from nats.js.errors import NoStreamResponseError
from scheduler_support import planner_timer, published_count, stream_messages
from sqlalchemy import text

from dripiq.planner.v1 import timers_pb2
from dripiq_common.bus.client import Outgoing
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.errors import InvalidArgument
from dripiq_scheduler.acks import AckedPublisher
from dripiq_scheduler.firer import Firer
from dripiq_scheduler.service import TimerService

# Batches of 750-1,000 timers: large enough that overlapping calls interleave inside PostgreSQL.
BATCH_UNIT = 250

timer = planner_timer
T0 = datetime(2032, 5, 1, 8, 0, tzinfo=UTC)


async def rows(engine, tenant_id: str) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT key, status, version, scheduled_for, canceled_at, fired_at, payload "
                "FROM scheduler.timers WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        )
        return {row.key: tuple(row[1:]) for row in result}


async def test_a_batch_keeps_the_one_timer_rules_for_fired_canceled_and_repeated_keys(engine, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    await timers.schedule_many([timer(tenant_id, k, T0 + timedelta(hours=1)) for k in ("fired", "canceled", "moved")])
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE scheduler.timers SET status = 'fired', fired_at = :now WHERE tenant_id = :t AND key = 'fired'"
            ),
            {"t": tenant_id, "now": T0},
        )
    await timers.batch_cancel(tenant_id, ["canceled", "moved"])

    clock.advance(timedelta(minutes=1))
    stored = await timers.schedule_many(
        [
            timer(tenant_id, "fired", T0 + timedelta(hours=1)),  # same content: a fired timer stays fired
            timer(tenant_id, "canceled", T0 + timedelta(hours=1)),  # same content: stays canceled
            timer(tenant_id, "moved", T0 + timedelta(hours=2)),  # new content: re-armed, next version
            timer(tenant_id, "new", T0 + timedelta(hours=3), campaign="first"),
            timer(tenant_id, "new", T0 + timedelta(hours=4), campaign="last"),  # the last of a key wins
        ]
    )
    assert stored == 4
    got = await rows(engine, tenant_id)
    assert got["fired"][:2] == ("fired", 1)
    assert got["canceled"][:2] == ("canceled", 1)
    status, version, scheduled_for, canceled_at, fired_at, _ = got["moved"]
    assert (status, version, scheduled_for, canceled_at, fired_at) == ("active", 2, T0 + timedelta(hours=2), None, None)
    assert got["new"][:3] == ("active", 1, T0 + timedelta(hours=4))
    assert timers_pb2.PlannerTimer.FromString(got["new"][5]).campaign_id == "last"


async def test_keys_and_payloads_with_every_kind_of_byte_are_stored_as_given(engine, tenant_id):
    """Values travel as arrays: quotes, braces, commas and backslashes in a key (all a key may
    hold), NUL and high bytes in a payload, must neither break the statement nor be changed by it."""
    timers = TimerService(engine, ManualClock(T0))
    keys = ['a"b', "c,d", "{e}", "f\\g", "NULL", "'};DROP-TABLE-x;--", "(x,y)"]
    batch = [timer(tenant_id, key, T0 + timedelta(hours=1), campaign=key + "\x00\xff") for key in keys]
    assert await timers.schedule_many(batch) == len(keys)
    got = await rows(engine, tenant_id)
    assert sorted(got) == sorted(keys)
    for t in batch:
        assert got[t.key][5] == t.payload


async def test_overlapping_batches_side_by_side_store_each_key_once(engine, tenant_id):
    """Rows are locked in one order, so two batches over the same keys in opposite orders
    neither deadlock nor duplicate."""
    timers = TimerService(engine, ManualClock(T0))
    keys = [f"k{i:04d}" for i in range(2000)]
    forward = [timer(tenant_id, k, T0 + timedelta(hours=1)) for k in keys]
    backward = [timer(tenant_id, k, T0 + timedelta(hours=2)) for k in reversed(keys)]
    await asyncio.gather(*(timers.schedule_many(b) for b in (forward, backward, forward, backward)))
    got = await rows(engine, tenant_id)
    assert len(got) == len(keys)
    assert {row[0] for row in got.values()} == {"active"}
    # Whichever batch came last, each key's version counts the content changes it saw.
    assert {row[1] for row in got.values()} <= {1, 2, 3, 4}


async def test_rounds_in_flight_fire_each_timer_once_even_when_the_firer_dies_mid_round(engine, js, tenant_id):
    """Several rounds at once take disjoint rows (SKIP LOCKED); a firer stopped dead while its
    rounds are publishing commits none of them, and the next firer's re-publishes of what
    already went out are dropped by the stream's dedupe: every timer once on the stream."""
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    keys = [f"r{i:04d}" for i in range(3000)]
    await timers.schedule_many([timer(tenant_id, k, T0 + timedelta(minutes=1), campaign=k) for k in keys])
    clock.advance(timedelta(minutes=2))
    subject = Subjects.planner_timer(tenant_id)

    dying = Firer(engine, js, clock, batch_size=250, poll_seconds=0.01, rounds_in_flight=3)
    task = asyncio.create_task(dying.run())
    for _ in range(2000):  # bounded: until some of ours are out, then the process "dies"
        if await published_count(js, subject) or task.done():
            break
        await asyncio.sleep(0.005)
    # Cancelled where it stands, rounds in flight and all; stopped too, so that no loop of it
    # outlives the test should a cancellation land where asyncio swallows it.
    dying.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)

    survivor = Firer(engine, js, clock, batch_size=250, rounds_in_flight=3)
    for _ in range(200):  # bounded: each pass fires rounds until none is full
        if {row[0] for row in (await rows(engine, tenant_id)).values()} == {"fired"}:
            break
        await asyncio.gather(*(survivor.fire_once() for _ in range(3)))
    assert {row[0] for row in (await rows(engine, tenant_id)).values()} == {"fired"}
    published = await stream_messages(js, "PLANNER_TIMERS", subject)
    assert sorted(m.headers["Dripiq-Timer-Key"] for m in published) == keys


async def test_the_publisher_answers_per_message_stored_duplicate_or_why_not(js, tenant_id):
    publisher = AckedPublisher(js._nc, ack_seconds=5)
    subject = Subjects.planner_timer(tenant_id)
    data = timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id="c").SerializeToString()
    answers = await publisher.publish(
        [
            Outgoing(subject, data, f"ack-test:{tenant_id}:1", {}),
            Outgoing(subject, data, f"ack-test:{tenant_id}:1", {}),  # inside the duplicate window
            Outgoing("dripiq.nowhere." + tenant_id, data, f"ack-test:{tenant_id}:2", {}),
        ]
    )
    assert answers[:2] == [None, None]
    assert isinstance(answers[2], NoStreamResponseError)
    assert await published_count(js, subject) == 1
    assert await publisher.publish([]) == []


async def test_a_bad_timer_last_in_a_large_batch_stores_none_of_the_batch(engine, tenant_id):
    """A bad timer after a thousand good ones leaves nothing stored."""
    timers = TimerService(engine, ManualClock(T0))
    batch = [timer(tenant_id, f"k{i:04d}", T0 + timedelta(hours=1)) for i in range(3 * BATCH_UNIT)]
    batch.append(timer(tenant_id, "zzz-last", T0 + timedelta(hours=1), campaign="c"))
    batch[-1].payload = b"\xff not a PlannerTimer"
    with pytest.raises(InvalidArgument) as exc:
        await timers.batch_schedule(tenant_id, batch)
    assert exc.value.field == f"timers[{len(batch) - 1}].payload"
    assert await rows(engine, tenant_id) == {}


async def test_overlapping_batch_calls_side_by_side_store_each_key_once(engine, tenant_id):
    timers = TimerService(engine, ManualClock(T0))
    keys = [f"k{i:04d}" for i in range(4 * BATCH_UNIT)]
    forward = [timer(tenant_id, k, T0 + timedelta(hours=1)) for k in keys]
    backward = [timer(tenant_id, k, T0 + timedelta(hours=2)) for k in reversed(keys)]
    counts = await asyncio.gather(*(timers.batch_schedule(tenant_id, b) for b in (forward, backward, forward)))
    assert counts == [len(keys)] * 3
    assert len(await rows(engine, tenant_id)) == len(keys)
