"""Timers the bus refuses as too large, on real PostgreSQL and NATS: the API refuses a payload
over what the bus takes (the NATS server's max_payload as it announces it) naming the field,
and a stored timer JetStream still refuses when it is due (the target stream's max_msg_size, or
the server's max_payload lowered since) is dead-lettered with its reason while its round fires
the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from scheduler_support import published_count, refused, served
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import deadletters
from dripiq_common.bus.client import connect, ensure_streams
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_common.clock import ManualClock
from dripiq_devtools.servers import EmbeddedNats
from dripiq_scheduler import domain
from dripiq_scheduler.firer import DEAD_LETTER_CONSUMER, Firer
from dripiq_scheduler.models import timers as timers_table
from dripiq_scheduler.service import TimerService

T0 = datetime(2034, 6, 1, 9, 0, tzinfo=UTC)
SMALL_SERVER_MAX_PAYLOAD = 32 * 1024


def timer(tenant_id: str, key: str, size: int = 0, fire_at: datetime = T0) -> pb.Timer:
    """A planner timer whose payload is about `size` bytes (its campaign id is the padding)."""
    padding = "c" * max(1, size)
    t = pb.Timer(
        tenant_id=tenant_id,
        key=key,
        kind="step_due",
        target=pb.TIMER_TARGET_PLANNER_TIMER,
        payload=timers_pb2.PlannerTimer(tenant_id=tenant_id, campaign_id=padding).SerializeToString(),
    )
    t.fire_at.FromDatetime(fire_at)
    return t


@pytest.fixture(scope="module")
def small_nats(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A NATS server of this module's own whose max_payload is far below the scheduler's cap."""
    server = EmbeddedNats(
        Path(tmp_path_factory.mktemp("small-nats")), extra_config=f"max_payload: {SMALL_SERVER_MAX_PAYLOAD}\n"
    ).start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def small_nc(small_nats: EmbeddedNats) -> AsyncIterator:  # type: ignore[type-arg]
    conn = await connect(small_nats.url, name="scheduler-payload-tests")
    await ensure_streams(conn.jetstream(), Streams.all())
    yield conn
    await conn.close()


async def fire_all(firer: Firer) -> None:
    rounds = 0
    while await firer.fire_once():  # other tests' due timers may come along; bounded by them
        rounds += 1
        assert rounds < 1000


async def row_of(engine: AsyncEngine, tenant_id: str, key: str):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        query = select(timers_table).where(timers_table.c.tenant_id == tenant_id, timers_table.c.key == key)
        return (await conn.execute(query)).one()


async def test_the_api_refuses_a_payload_over_what_the_bus_takes(engine, small_nc, tenant_id):
    assert small_nc.max_payload == SMALL_SERVER_MAX_PAYLOAD
    limit = domain.bus_payload_limit(small_nc.max_payload)
    assert limit < domain.MAX_PAYLOAD_BYTES
    timers = TimerService(engine, ManualClock(T0), max_payload=limit)

    async with served(timers) as stub:
        violation = await refused(stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=timer(tenant_id, "big", limit))))
        assert violation.field == "timer.payload"
        assert f"at most {limit} bytes" in violation.description
        batch = pb.BatchScheduleTimersRequest(
            tenant_id=tenant_id, timers=[timer(tenant_id, "small"), timer(tenant_id, "big", limit)]
        )
        assert (await refused(stub.BatchScheduleTimers(batch))).field == "timers[1].payload"
        # Nothing of the refused batch was stored.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetTimer(pb.GetTimerRequest(tenant_id=tenant_id, key="small"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # Just under the limit is taken, and fires through this very server.
        await stub.ScheduleTimer(pb.ScheduleTimerRequest(timer=timer(tenant_id, "fits", limit - 64)))
    await fire_all(Firer(engine, small_nc.jetstream(), ManualClock(T0)))
    assert (await timers.get(tenant_id, "fits")).status == pb.TIMER_STATUS_FIRED


async def test_a_stored_timer_the_target_stream_refuses_is_dead_lettered_while_the_round_fires_the_rest(
    engine, js, tenant_id
):
    clock = ManualClock(T0)
    timers = TimerService(engine, clock)
    # Oldest first: the refused timer comes before the good ones in the round.
    await timers.schedule(timer(tenant_id, "big", 16 * 1024, T0 - timedelta(minutes=2)))
    good = [f"good-{i}" for i in range(3)]
    await timers.schedule_many([timer(tenant_id, key, 0, T0 - timedelta(minutes=1)) for key in good])
    # The stream's limit was lowered after the timer was stored.
    small = dataclasses.replace(Streams.PLANNER_TIMERS, max_msg_size=8 * 1024)
    await js.update_stream(small.config(1))
    try:
        await fire_all(Firer(engine, js, clock))
    finally:
        await js.update_stream(Streams.PLANNER_TIMERS.config(1))

    for key in good:
        assert (await timers.get(tenant_id, key)).status == pb.TIMER_STATUS_FIRED
    assert await published_count(js, Subjects.planner_timer(tenant_id)) == len(good)
    big = await row_of(engine, tenant_id, "big")
    assert big.status == "canceled"
    assert "JetStream refused it for good" in big.cancel_reason and "10054" in big.cancel_reason
    [letter] = [
        letter
        for letter in await deadletters.dead_letters(js, consumer=DEAD_LETTER_CONSUMER, limit=1000)
        if letter.headers.get("Dripiq-Timer-Tenant") == tenant_id and letter.headers.get("Dripiq-Timer-Key") == "big"
    ]
    assert letter.error == big.cancel_reason
    # The dead letters' stream takes it whole: once the limit is fixed it can be replayed.
    assert letter.original_subject == Subjects.planner_timer(tenant_id) and len(letter.data) > 16 * 1024


async def test_a_stored_timer_over_the_servers_max_payload_is_dead_lettered_without_its_payload(
    engine, small_nc, tenant_id
):
    clock = ManualClock(T0)
    # Stored while the bus took more (a server whose max_payload was lowered since).
    stored_under = TimerService(engine, clock)
    await stored_under.schedule(timer(tenant_id, "huge", 40 * 1024, T0 - timedelta(minutes=2)))
    await stored_under.schedule(timer(tenant_id, "fine", 0, T0 - timedelta(minutes=1)))
    js = small_nc.jetstream()

    await fire_all(Firer(engine, js, clock))

    assert (await stored_under.get(tenant_id, "fine")).status == pb.TIMER_STATUS_FIRED
    huge = await row_of(engine, tenant_id, "huge")
    assert huge.status == "canceled" and "JetStream refused it for good" in huge.cancel_reason
    [letter] = [
        letter
        for letter in await deadletters.dead_letters(js, consumer=DEAD_LETTER_CONSUMER, limit=1000)
        if letter.headers.get("Dripiq-Timer-Tenant") == tenant_id and letter.headers.get("Dripiq-Timer-Key") == "huge"
    ]
    # Too large for the bus is too large for a dead letter: it goes without the payload and
    # names no subject, so `deadletters replay` declines it.
    assert letter.data == b"" and letter.original_subject == ""
    assert "payload is not kept" in letter.error
