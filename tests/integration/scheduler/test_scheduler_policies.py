"""Firing rounds on real PostgreSQL and NATS: overdue policies, pruning, metrics, and faults.

A firing round and the pruner touch every tenant's rows, so these tests run on a database of
their own (created on the session server, emptied before each test) instead of the shared
one. The fault tests start their own NATS and PostgreSQL servers, which they stop and start.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from scheduler_support import planner_timer, stream_messages
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs
from waiting import eventually

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import migrations
from dripiq_common.bus.client import connect, drain, ensure_streams
from dripiq_common.bus.contract import Streams, Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.db import create_engine
from dripiq_common.metrics import start_exporter
from dripiq_devtools.servers import EmbeddedNats, EmbeddedPostgres, free_port
from dripiq_scheduler import domain, repository
from dripiq_scheduler.domain import Overdue, OverduePolicy
from dripiq_scheduler.firer import Firer
from dripiq_scheduler.metrics import PendingGauge
from dripiq_scheduler.models import timers as timers_table
from dripiq_scheduler.pruner import Pruner
from dripiq_scheduler.service import TimerService


def timer(tenant_id: str, key: str, fire_at: datetime) -> pb.Timer:
    return planner_timer(tenant_id, key, fire_at, campaign=key)


T0 = datetime(2032, 6, 1, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def fire_all(firer: Firer) -> int:
    total = 0
    while done := await firer.fire_once():
        total += done
    return total


async def statuses(engine: AsyncEngine, tenant_id: str) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            timers_table.select().where(timers_table.c.tenant_id == tenant_id).order_by(timers_table.c.key)
        )
        return {row.key: row.status for row in rows}


@pytest_asyncio.fixture(scope="module")
async def own_engine(engine: AsyncEngine, database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of this module's own on the session server, with the scheduler schema."""
    name = f"scheduler_{uuid.uuid4().hex[:8]}"
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(migrations.upgrade, "scheduler", url)
    own = create_engine(url, pool_size=4)
    yield own
    await own.dispose()
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture
async def db(own_engine: AsyncEngine) -> AsyncEngine:
    async with own_engine.begin() as conn:
        await conn.execute(text("TRUNCATE scheduler.timers"))
    return own_engine


async def test_fire_policy_fires_overdue_timers_in_due_order(db, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(db, clock)
    for minute in (3, 1, 2):
        await timers.schedule(timer(tenant_id, f"m{minute}", T0 + timedelta(minutes=minute)))
    clock.advance(timedelta(hours=5))
    firer = Firer(db, js, clock, overdue=Overdue(OverduePolicy.FIRE, limit_seconds=3600))
    with capture_logs() as logs:
        assert await fire_all(firer) == 3
    published = await stream_messages(js, "PLANNER_TIMERS", Subjects.planner_timer(tenant_id))
    assert [m.headers["Dripiq-Timer-Key"] for m in published] == ["m1", "m2", "m3"]
    assert [e["count"] for e in logs if e["event"] == "firer.overdue_fired"] == [3]


async def test_drop_policy_cancels_timers_past_the_limit_with_a_reason(db, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(db, clock)
    await timers.schedule(timer(tenant_id, "stale", T0 + timedelta(minutes=1)))
    await timers.schedule(timer(tenant_id, "late", T0 + timedelta(minutes=90)))
    clock.advance(timedelta(hours=2))
    # Scheduled now for a time long past: due from now on, so the policy lets it fire.
    with capture_logs() as logs:
        await timers.schedule(timer(tenant_id, "past", T0 - 10 * DAY))
    assert [e["key"] for e in logs if e["event"] == "timer.scheduled_in_past_fires_now"] == ["past"]

    dropped_before = metric("dripiq_scheduler_timers_dropped_total")
    firer = Firer(db, js, clock, overdue=Overdue(OverduePolicy.DROP, limit_seconds=3600))
    with capture_logs() as logs:
        assert await fire_all(firer) == 3
    assert await statuses(db, tenant_id) == {"late": "fired", "past": "fired", "stale": "canceled"}
    assert metric("dripiq_scheduler_timers_dropped_total") - dropped_before == 1
    assert [e["count"] for e in logs if e["event"] == "firer.overdue_dropped"] == [1]
    published = await stream_messages(js, "PLANNER_TIMERS", Subjects.planner_timer(tenant_id))
    assert sorted(m.headers["Dripiq-Timer-Key"] for m in published) == ["late", "past"]

    async with db.connect() as conn:
        stale = await repository.get(conn, tenant_id=tenant_id, key="stale")
    assert stale.cancel_reason.startswith("overdue")
    assert stale.canceled_at == clock.now()
    # Scheduling it again with new content re-arms it and forgets the reason.
    await timers.schedule(timer(tenant_id, "stale", clock.now() + DAY))
    async with db.connect() as conn:
        rearmed = await repository.get(conn, tenant_id=tenant_id, key="stale")
    assert (rearmed.status, rearmed.cancel_reason, rearmed.version) == ("active", None, 2)


async def test_delay_policy_spreads_overdue_timers_and_fires_them_later(db, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(db, clock)
    await timers.schedule_many([timer(tenant_id, f"k{i:02d}", T0 + timedelta(minutes=1)) for i in range(20)])
    clock.advance(timedelta(hours=1))
    now = clock.now()
    firer = Firer(db, js, clock, overdue=Overdue(OverduePolicy.DELAY, limit_seconds=600, spread_seconds=300))
    assert await firer.fire_once() == 20  # settled by moving them, not by firing
    subject = Subjects.planner_timer(tenant_id)
    assert await stream_messages(js, "PLANNER_TIMERS", subject) == []

    async with db.connect() as conn:
        rows = (await conn.execute(timers_table.select().where(timers_table.c.tenant_id == tenant_id))).all()
    assert {(row.status, row.version) for row in rows} == {("active", 2)}
    for row in rows:
        # Deterministic: the same timer version gets the same slot on every replica.
        jitter = domain.jitter_seconds(tenant_id, row.key, 1, 300)
        assert row.scheduled_for == now + timedelta(seconds=jitter)
        assert now <= row.scheduled_for < now + timedelta(seconds=300)
    assert len({row.scheduled_for for row in rows}) > 10  # spread, not bunched

    clock.advance(timedelta(seconds=300))
    assert await fire_all(firer) == 20
    published = await stream_messages(js, "PLANNER_TIMERS", subject)
    assert len(published) == 20
    assert {m.headers["Dripiq-Timer-Version"] for m in published} == {"2"}


async def test_pruner_deletes_old_finished_timers_in_batches_and_never_an_active_one(db, js, tenant_id):
    clock = ManualClock(T0 - 10 * DAY)
    timers = TimerService(db, clock)
    # Ten days ago: five timers finished (three fired, two canceled), one left active.
    await timers.schedule_many([timer(tenant_id, f"old{i}", clock.now()) for i in range(3)])
    await fire_all(Firer(db, js, clock))
    await timers.schedule_many([timer(tenant_id, k, clock.now() + DAY * 30) for k in ("oldc0", "oldc1", "active")])
    assert await timers.batch_cancel(tenant_id, ["oldc0", "oldc1"]) == 2
    # Yesterday: one fired, one canceled; both inside retention.
    clock.advance(9 * DAY)
    await timers.schedule(timer(tenant_id, "new", clock.now()))
    await fire_all(Firer(db, js, clock))
    await timers.schedule(timer(tenant_id, "newc", clock.now() + DAY))
    await timers.cancel(pb.CancelTimerRequest(tenant_id=tenant_id, key="newc"))
    clock.advance(DAY)

    pruned_before = metric("dripiq_scheduler_timers_pruned_total")
    pruner = Pruner(db, clock, retention_seconds=7 * 24 * 3600, batch_size=2)
    assert [await pruner.prune_once() for _ in range(4)] == [2, 2, 1, 0]
    assert await statuses(db, tenant_id) == {"active": "active", "new": "fired", "newc": "canceled"}
    assert metric("dripiq_scheduler_timers_pruned_total") - pruned_before == 5


async def test_pruner_skips_rows_another_transaction_holds(db, js, tenant_id):
    clock = ManualClock(T0 - 10 * DAY)
    timers = TimerService(db, clock)
    await timers.schedule_many([timer(tenant_id, f"k{i}", clock.now()) for i in range(3)])
    await fire_all(Firer(db, js, clock))
    clock.advance(10 * DAY)
    async with db.connect() as holder:
        async with holder.begin():
            # A transaction re-arming k0 holds its row; the pruner neither waits for it nor
            # deletes it from under it.
            await holder.execute(
                update(timers_table)
                .where(timers_table.c.tenant_id == tenant_id, timers_table.c.key == "k0")
                .values(group_key="held")
            )
            pruner = Pruner(db, clock, retention_seconds=7 * 24 * 3600, batch_size=10)
            assert await asyncio.wait_for(pruner.prune_once(), timeout=5) == 2
    assert list(await statuses(db, tenant_id)) == ["k0"]


async def test_metrics_move_after_a_fire_round(db, js, tenant_id):
    clock = ManualClock(T0)
    timers = TimerService(db, clock)
    await timers.schedule_many([timer(tenant_id, f"due{i}", T0 - timedelta(seconds=30)) for i in range(3)])
    await timers.schedule_many([timer(tenant_id, f"later{i}", T0 + DAY) for i in range(2)])

    gauge = PendingGauge(db)
    await gauge.refresh_once()
    assert metric("dripiq_scheduler_timers_pending") == 5

    fired = metric("dripiq_scheduler_timers_fired_total")
    lateness_count = metric("dripiq_scheduler_fire_lateness_seconds_count")
    lateness_sum = metric("dripiq_scheduler_fire_lateness_seconds_sum")
    assert await fire_all(Firer(db, js, clock)) == 3
    assert metric("dripiq_scheduler_timers_fired_total") - fired == 3
    assert metric("dripiq_scheduler_fire_lateness_seconds_count") - lateness_count == 3
    # The clock stood still: each one was published 30 s after its fire_at.
    assert metric("dripiq_scheduler_fire_lateness_seconds_sum") - lateness_sum == pytest.approx(90)

    await gauge.refresh_once()
    assert metric("dripiq_scheduler_timers_pending") == 2
    # Above the exact-count cap, the gauge reports PostgreSQL's estimate for the due index.
    async with db.begin() as conn:
        await conn.execute(text("ANALYZE scheduler.timers"))
    await PendingGauge(db, exact_up_to=1).refresh_once()
    assert metric("dripiq_scheduler_timers_pending") == 2

    assert start_exporter(host="127.0.0.1", port=0) is None  # off
    exporter = start_exporter(host="127.0.0.1", port=free_port())
    assert exporter is not None
    try:
        # A port already taken is logged and skipped, not fatal.
        with capture_logs() as logs:
            assert start_exporter(host="127.0.0.1", port=exporter.port) is None
        assert [e["event"] for e in logs] == ["metrics.exporter_unavailable"]
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    finally:
        await asyncio.to_thread(exporter.stop)
    assert "dripiq_scheduler_timers_fired_total" in body
    assert "dripiq_scheduler_fire_lateness_seconds_bucket" in body


async def test_nats_outage_loses_and_duplicates_nothing(db, tmp_path: Path, tenant_id):
    nats = EmbeddedNats(tmp_path / "nats").start()
    nc = await connect(nats.url, name="outage-test")
    try:
        js = nc.jetstream()
        await ensure_streams(js, [Streams.PLANNER_TIMERS])
        clock = ManualClock(T0)
        timers = TimerService(db, clock)
        keys = [f"k{i}" for i in range(5)]
        await timers.schedule_many([timer(tenant_id, key, T0) for key in keys])

        connection = {
            e: metric("dripiq_nats_connection_events_total", event=e) for e in ("disconnected", "reconnected")
        }
        nats.stop()
        failures = metric("dripiq_scheduler_publish_failures_total")
        firer = Firer(db, js, clock, publish_timeout=0.5)
        assert await firer.fire_once() == 0
        assert set((await statuses(db, tenant_id)).values()) == {"active"}
        assert metric("dripiq_scheduler_publish_failures_total") - failures == 5

        # Same port and store: the stream, and whatever reached it, is still there. The
        # client reconnects by itself (and may flush the publishes it buffered meanwhile).
        nats = EmbeddedNats(nats.store_dir, port=nats.port, monitor_port=nats.monitor_port).start()

        async def connected() -> bool:
            return nc.is_connected

        async def everything_fired() -> bool:
            await fire_all(firer)
            return set((await statuses(db, tenant_id)).values()) == {"fired"}

        await eventually(connected)
        # Operators see the outage as one disconnect and one reconnect of this connection.
        assert {e: metric("dripiq_nats_connection_events_total", event=e) - connection[e] for e in connection} == {
            "disconnected": 1,
            "reconnected": 1,
        }
        await eventually(everything_fired)
        subject = Subjects.planner_timer(tenant_id)
        info = await js.stream_info("PLANNER_TIMERS", subjects_filter=subject)
        assert info.state.subjects == {subject: 5}
        published = await stream_messages(js, "PLANNER_TIMERS", subject)
        assert sorted(m.headers["Dripiq-Timer-Key"] for m in published) == keys
    finally:
        await drain(nc, grace_seconds=2)
        nats.stop()


async def test_postgres_restart_is_survived(js, tmp_path: Path, tenant_id):
    pg = await asyncio.to_thread(EmbeddedPostgres(tmp_path / "pg", temporary=True).start)
    own = None
    try:
        await asyncio.to_thread(migrations.upgrade, "scheduler", pg.url)
        own = create_engine(pg.url, pool_size=2)
        clock = ManualClock(T0)
        timers = TimerService(own, clock)
        firer = Firer(own, js, clock, poll_seconds=0.05)
        timers.on_scheduled_due = firer.wake
        await timers.schedule(timer(tenant_id, "before", T0))
        loop = asyncio.create_task(firer.run())

        async def fired(key: str) -> bool:
            try:
                return (await timers.get(tenant_id, key)).status == pb.TIMER_STATUS_FIRED
            except Exception:
                return False

        await eventually(lambda: fired("before"))

        with capture_logs() as logs:
            await asyncio.to_thread(pg.stop)
            with pytest.raises((OSError, DBAPIError)):
                await timers.schedule(timer(tenant_id, "during", T0))

            async def a_round_failed() -> bool:
                return any(e["event"] == "loop.round_failed" and e["loop"] == "firer" for e in logs)

            await eventually(a_round_failed)
        await asyncio.to_thread(pg.start)

        # Pooled connections died with the server; pool_pre_ping replaces them. Allow one
        # failed call all the same, then it must work.
        for attempt in range(2):
            try:
                await timers.schedule(timer(tenant_id, "after", T0))
                break
            except Exception:
                if attempt:
                    raise
        # The same firing loop, which lived through failed rounds, fires it.
        await eventually(lambda: fired("after"))
        assert not loop.done()
        firer.stop()
        await asyncio.wait_for(loop, timeout=5)
        subject = Subjects.planner_timer(tenant_id)
        published = await stream_messages(js, "PLANNER_TIMERS", subject)
        assert [m.headers["Dripiq-Timer-Key"] for m in published] == ["before", "after"]
    finally:
        if own is not None:
            await own.dispose()
        await asyncio.to_thread(pg.close)
