"""The outbox relay and the pull worker against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.errors import PermanentMessageError
from dripiq_common.jetstream import ConsumerSpec, PullWorker, StreamSpec, ensure_streams
from dripiq_common.outbox import OutboxMessage, OutboxRelay, enqueue
from dripiq_scheduler.models import outbox as scheduler_outbox

TEST_STREAM = StreamSpec("TEST_PLUMBING", ("test.plumbing.>",), work_queue=True)


async def test_relay_publishes_committed_rows_once_and_deletes_them(engine, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.relay.{tenant_id}"
    async with engine.begin() as conn:
        await enqueue(
            conn,
            scheduler_outbox,
            [OutboxMessage(subject, commands_pb2.TimerCommand(tenant_id=tenant_id)) for _ in range(3)],
        )
    relay = OutboxRelay(engine, js, scheduler_outbox)
    while await relay.relay_once():
        pass
    info = await js.stream_info(TEST_STREAM.name, subjects_filter=subject)
    assert info.state.subjects[subject] == 3
    async with engine.connect() as conn:
        left = await conn.scalar(
            select(func.count()).select_from(scheduler_outbox).where(scheduler_outbox.c.subject == subject)
        )
    assert left == 0


async def test_worker_retries_then_acks_and_dead_letters_poison(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.work.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-{tenant_id}", subject, max_deliver=3, retry_delays_seconds=(0.05,))
    attempts: dict[bytes, int] = {}
    done: list[bytes] = []

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        attempts[msg.data] = attempts.get(msg.data, 0) + 1
        if msg.data == b"poison":
            raise PermanentMessageError("cannot decode")
        if msg.data == b"flaky" and attempts[msg.data] < 2:
            raise RuntimeError("transient")
        if msg.data == b"always-fails":
            raise RuntimeError("still broken")
        done.append(msg.data)

    for payload in (b"ok", b"flaky", b"poison", b"always-fails"):
        await js.publish(subject, payload)
    worker = PullWorker(js, nats_conn, spec, handler, fetch_timeout=0.2)
    task = asyncio.create_task(worker.run())
    for _ in range(100):
        if attempts.get(b"always-fails", 0) >= 3 and b"flaky" in done:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    worker.stop()
    await asyncio.wait_for(task, 5)

    assert sorted(done) == [b"flaky", b"ok"]
    assert attempts[b"poison"] == 1 and attempts[b"always-fails"] == 3
    dlq = f"dripiq.dlq.{TEST_STREAM.name}.{spec.durable}"
    info = await js.stream_info("DEAD_LETTERS", subjects_filter=dlq)
    assert info.state.subjects[dlq] == 2
    last = await js.get_last_msg("DEAD_LETTERS", dlq)
    assert last.headers["Dripiq-Original-Subject"] == subject
    assert (await js.consumer_info(TEST_STREAM.name, spec.durable)).num_pending == 0
    await js.delete_consumer(TEST_STREAM.name, spec.durable)


async def test_worker_with_concurrency_handles_messages_side_by_side(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.parallel.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-par-{tenant_id}", subject)
    running, peak, done = 0, 0, 0
    release = asyncio.Event()

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        if peak >= 4:
            release.set()
        await asyncio.wait_for(release.wait(), 5)
        running -= 1
        done += 1

    for i in range(8):
        await js.publish(subject, str(i).encode())
    worker = PullWorker(js, nats_conn, spec, handler, batch_size=4, concurrency=4, fetch_timeout=0.2)
    task = asyncio.create_task(worker.run())
    for _ in range(100):
        if done == 8:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert done == 8 and peak == 4
    assert (await js.consumer_info(TEST_STREAM.name, spec.durable)).num_pending == 0
    await js.delete_consumer(TEST_STREAM.name, spec.durable)
