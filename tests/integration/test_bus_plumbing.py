"""The outbox relay and the pull worker against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY
from sqlalchemy import func, select
from waiting import eventually

from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.bus.client import ensure_streams
from dripiq_common.bus.contract import ConsumerSpec, StreamSpec
from dripiq_common.bus.worker import PullWorker
from dripiq_common.errors import PermanentMessageError
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
    published = REGISTRY.get_sample_value("dripiq_outbox_published_total", {"outbox": "scheduler"}) or 0
    while await relay.relay_once():
        pass
    info = await js.stream_info(TEST_STREAM.name, subjects_filter=subject)
    assert info.state.subjects[subject] == 3
    # What an operator sees: messages relayed, and nothing left waiting.
    assert REGISTRY.get_sample_value("dripiq_outbox_published_total", {"outbox": "scheduler"}) >= published + 3
    assert REGISTRY.get_sample_value("dripiq_outbox_oldest_age_seconds", {"outbox": "scheduler"}) == 0
    async with engine.connect() as conn:
        left = await conn.scalar(
            select(func.count()).select_from(scheduler_outbox).where(scheduler_outbox.c.subject == subject)
        )
    assert left == 0


async def all_settled(js, spec: ConsumerSpec) -> bool:  # type: ignore[no-untyped-def]
    info = await js.consumer_info(spec.stream.name, spec.durable)
    return (
        info.num_pending == 0
        and info.num_ack_pending == 0
        and info.num_redelivered == 0
        or (info.num_pending == 0 and info.num_ack_pending == 0)
    )


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
    await eventually(
        lambda: attempts.get(b"always-fails", 0) >= 3 and b"flaky" in done, "the retries and the dead letters"
    )
    # Nothing left to deliver: every message acked or terminated, none waiting or in flight.
    await eventually(lambda: all_settled(js, spec), "the consumer settled")
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
    # What an operator sees: dripiq_worker_messages_total by consumer and result.
    counts = {
        result: REGISTRY.get_sample_value("dripiq_worker_messages_total", {"consumer": spec.durable, "result": result})
        for result in ("acked", "retried", "dead_lettered")
    }
    assert counts == {"acked": 2, "retried": 3, "dead_lettered": 2}
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


async def test_batch_handler_results_ack_retry_or_dead_letter_each_message(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.batch.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-batch-{tenant_id}", subject, max_deliver=3, retry_delays_seconds=(0.05,))
    batches: list[list[bytes]] = []
    deliveries: dict[bytes, int] = {}

    async def batch_handler(msgs):  # type: ignore[no-untyped-def]
        batches.append([m.data for m in msgs])
        for msg in msgs:
            deliveries[msg.data] = deliveries.get(msg.data, 0) + 1
        results = {
            b"ok": None,
            b"flaky": RuntimeError("transient") if deliveries[b"flaky"] == 1 else None,
            b"poison": PermanentMessageError("cannot decode"),
        }
        return [results[m.data] for m in msgs]

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        # A fetch of one message goes to the single handler: the redelivered one.
        deliveries[msg.data] = deliveries.get(msg.data, 0) + 1
        if msg.data != b"flaky":
            raise AssertionError(f"{msg.data!r} came back")

    for payload in (b"ok", b"flaky", b"poison"):
        await js.publish(subject, payload)
    worker = PullWorker(js, nats_conn, spec, handler, batch_handler=batch_handler, fetch_timeout=0.2)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: deliveries.get(b"flaky", 0) >= 2, "the flaky message delivered again")
        # Then nothing else can come back: every message acked or terminated.
        await eventually(lambda: all_settled(js, spec), "the consumer settled")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert batches[0] == [b"ok", b"flaky", b"poison"]
    assert deliveries == {b"ok": 1, b"flaky": 2, b"poison": 1}
    dlq = f"dripiq.dlq.{TEST_STREAM.name}.{spec.durable}"
    info = await js.stream_info("DEAD_LETTERS", subjects_filter=dlq)
    assert info.state.subjects[dlq] == 1
    dead = await js.get_last_msg("DEAD_LETTERS", dlq)
    assert dead.data == b"poison"
    assert (dead.headers["Dripiq-Original-Subject"], dead.headers["Dripiq-Error"]) == (subject, "cannot decode")
    consumer = await js.consumer_info(TEST_STREAM.name, spec.durable)
    assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)
    # Work-queue retention: every message was acked or terminated, so none is left.
    assert subject not in ((await js.stream_info(TEST_STREAM.name, subjects_filter=subject)).state.subjects or {})
    await js.delete_consumer(TEST_STREAM.name, spec.durable)


async def test_batch_handler_with_concurrency_handles_whole_batches_side_by_side(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.batches.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-batches-{tenant_id}", subject)
    running, peak = 0, 0
    batches: list[list[bytes]] = []
    singles: list[bytes] = []
    both = asyncio.Event()

    async def batch_handler(msgs):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running >= 2:
            both.set()
        try:
            # Bounded: a worker handling one batch at a time fails the test instead of hanging it.
            await asyncio.wait_for(both.wait(), 5)
        finally:
            running -= 1
        batches.append([m.data for m in msgs])
        return [None] * len(msgs)

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        singles.append(msg.data)

    for i in range(4):
        await js.publish(subject, str(i).encode())
    worker = PullWorker(
        js, nats_conn, spec, handler, batch_size=2, concurrency=2, batch_handler=batch_handler, fetch_timeout=0.2
    )
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(100):
            if len(batches) + len(singles) >= 2 and sum(map(len, batches)) + len(singles) == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert peak == 2 and singles == []
    assert sorted(batches) == [[b"0", b"1"], [b"2", b"3"]]
    consumer = await js.consumer_info(TEST_STREAM.name, spec.durable)
    assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)
    await js.delete_consumer(TEST_STREAM.name, spec.durable)
