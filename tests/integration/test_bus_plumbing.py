"""The outbox relay and the pull worker against real PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from waiting import eventually

from dripiq.scheduler.v1 import commands_pb2
from dripiq_common.bus.client import ensure_streams
from dripiq_common.bus.contract import ConsumerSpec, StreamSpec
from dripiq_common.bus.worker import PullWorker, per_message, whole_batch
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
    """Nothing left to deliver: every message acked or terminated, none waiting or in flight."""
    info = await js.consumer_info(spec.stream.name, spec.durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


@asynccontextmanager
async def running(worker: PullWorker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await worker.js.delete_consumer(worker.spec.stream.name, worker.spec.durable)


def worker_count(spec: ConsumerSpec, result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_worker_messages_total", {"consumer": spec.durable, "result": result}) or 0


async def dead_letters(js, spec: ConsumerSpec) -> int:  # type: ignore[no-untyped-def]
    dlq = f"dripiq.dlq.{spec.stream.name}.{spec.durable}"
    info = await js.stream_info("DEAD_LETTERS", subjects_filter=dlq)
    return (info.state.subjects or {}).get(dlq, 0)


async def test_a_message_handler_is_retried_then_acked_or_dead_lettered(nats_conn, js, tenant_id):
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
    async with running(PullWorker(js, nats_conn, spec, per_message(handler), fetch_timeout=0.2)):
        await eventually(lambda: attempts.get(b"always-fails", 0) >= 3 and b"flaky" in done, "the retries")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")

    assert sorted(done) == [b"flaky", b"ok"]
    # A PermanentMessageError at once, any other error on the last delivery (max_deliver).
    assert attempts[b"poison"] == 1 and attempts[b"always-fails"] == 3
    assert await dead_letters(js, spec) == 2
    last = await js.get_last_msg("DEAD_LETTERS", f"dripiq.dlq.{TEST_STREAM.name}.{spec.durable}")
    assert (last.data, last.headers["Dripiq-Original-Subject"]) == (b"always-fails", subject)
    assert (last.headers["Dripiq-Delivered"], last.headers["Dripiq-Error"]) == ("3", "RuntimeError: still broken")
    # What an operator sees: dripiq_worker_messages_total by consumer and result.
    counts = {result: worker_count(spec, result) for result in ("acked", "retried", "dead_lettered")}
    assert counts == {"acked": 2, "retried": 3, "dead_lettered": 2}


async def test_each_message_of_a_batch_is_settled_by_its_own_answer(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.batch.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-batch-{tenant_id}", subject, max_deliver=3, retry_delays_seconds=(0.05,))
    batches: list[list[bytes]] = []
    deliveries: dict[bytes, int] = {}

    async def handler(msgs):  # type: ignore[no-untyped-def]
        batches.append([m.data for m in msgs])
        for msg in msgs:
            deliveries[msg.data] = deliveries.get(msg.data, 0) + 1
        answers = {
            b"ok": None,
            b"flaky": RuntimeError("transient") if deliveries[b"flaky"] == 1 else None,
            b"poison": PermanentMessageError("cannot decode"),
            b"also-ok": None,
        }
        return [answers[m.data] for m in msgs]

    for payload in (b"ok", b"flaky", b"poison", b"also-ok"):
        await js.publish(subject, payload)
    async with running(PullWorker(js, nats_conn, spec, handler, fetch_timeout=0.2)):
        await eventually(lambda: deliveries.get(b"flaky", 0) >= 2, "the flaky message delivered again")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")

    # One batch, then the failed message alone on its retry; the others were acked at once.
    assert batches == [[b"ok", b"flaky", b"poison", b"also-ok"], [b"flaky"]]
    assert await dead_letters(js, spec) == 1
    dead = await js.get_last_msg("DEAD_LETTERS", f"dripiq.dlq.{TEST_STREAM.name}.{spec.durable}")
    assert dead.data == b"poison"
    assert (dead.headers["Dripiq-Original-Subject"], dead.headers["Dripiq-Error"]) == (subject, "cannot decode")
    assert {r: worker_count(spec, r) for r in ("acked", "retried", "dead_lettered")} == {
        "acked": 3,
        "retried": 1,
        "dead_lettered": 1,
    }
    # Work-queue retention: every message was acked or terminated, so none is left.
    assert subject not in ((await js.stream_info(TEST_STREAM.name, subjects_filter=subject)).state.subjects or {})


async def test_a_batch_whose_handler_raises_is_split_until_the_poison_message_is_alone(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.split.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-split-{tenant_id}", subject, max_deliver=3, retry_delays_seconds=(0.05,))
    calls: list[list[bytes]] = []
    committed: list[bytes] = []

    async def handle(msgs) -> None:  # type: ignore[no-untyped-def]
        # One transaction for the batch: all of it or none.
        calls.append([m.data for m in msgs])
        if any(m.data == b"5" for m in msgs):
            raise PermanentMessageError("no such kind")
        committed.extend(m.data for m in msgs)

    payloads = [str(i).encode() for i in range(8)]
    for payload in payloads:
        await js.publish(subject, payload)
    async with running(PullWorker(js, nats_conn, spec, whole_batch(handle), fetch_timeout=0.2)):
        await eventually(lambda: dead_letters(js, spec), "the poison message dead-lettered")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")

    # Halves, down to the message that raised; every other message committed once.
    assert calls == [
        payloads,
        payloads[:4],
        payloads[4:],
        payloads[4:6],
        [b"4"],
        [b"5"],
        payloads[6:],
    ]
    assert sorted(committed) == sorted(set(payloads) - {b"5"}) and len(committed) == 7
    dead = await js.get_last_msg("DEAD_LETTERS", f"dripiq.dlq.{TEST_STREAM.name}.{spec.durable}")
    assert (dead.data, dead.headers["Dripiq-Error"]) == (b"5", "no such kind")
    assert (worker_count(spec, "acked"), worker_count(spec, "dead_lettered")) == (7, 1)


async def test_batches_in_flight_are_handled_side_by_side(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.batches.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-batches-{tenant_id}", subject)
    running_now, peak = 0, 0
    batches: list[list[bytes]] = []
    both = asyncio.Event()

    async def handler(msgs):  # type: ignore[no-untyped-def]
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if running_now >= 2:
            both.set()
        try:
            # Bounded: a worker handling one batch at a time fails the test instead of hanging it.
            await asyncio.wait_for(both.wait(), 5)
        finally:
            running_now -= 1
        batches.append([m.data for m in msgs])
        return [None] * len(msgs)

    for i in range(4):
        await js.publish(subject, str(i).encode())
    worker = PullWorker(js, nats_conn, spec, handler, batch_size=2, batches_in_flight=2, fetch_timeout=0.2)
    async with running(worker):
        await eventually(lambda: sum(map(len, batches)) == 4, "every message handled")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")

    assert peak == 2
    assert sorted(batches) == [[b"0", b"1"], [b"2", b"3"]]


async def test_single_messages_in_flight_wait_on_the_network_side_by_side(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.parallel.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-par-{tenant_id}", subject)
    running_now, peak = 0, 0
    done: list[bytes] = []
    release = asyncio.Event()

    async def call(msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        if peak >= 4:
            release.set()
        try:
            await asyncio.wait_for(release.wait(), 5)
        finally:
            running_now -= 1
        done.append(msg.data)

    for i in range(8):
        await js.publish(subject, str(i).encode())
    worker = PullWorker(js, nats_conn, spec, per_message(call), batch_size=1, batches_in_flight=4, fetch_timeout=0.2)
    async with running(worker):
        await eventually(lambda: len(done) == 8, "every message handled")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")

    assert peak == 4 and sorted(done) == [str(i).encode() for i in range(8)]


async def test_hold_keeps_the_worker_from_fetching_until_it_lets_go(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.plumbing.hold.{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, f"test-hold-{tenant_id}", subject)
    handled: list[bytes] = []
    asked = 0
    holding = True

    def hold() -> float:
        nonlocal asked
        asked += 1
        return 0.05 if holding else 0.0

    async def handle(msg) -> None:  # type: ignore[no-untyped-def]
        handled.append(msg.data)

    for payload in (b"a", b"b"):
        await js.publish(subject, payload)
    worker = PullWorker(js, nats_conn, spec, per_message(handle), fetch_timeout=0.2, hold=hold)
    async with running(worker):
        # Asked again after each wait: the worker is holding, not stuck in a fetch.
        await eventually(lambda: asked >= 3, "the worker asking its hold again")
        assert handled == []
        info = await js.consumer_info(TEST_STREAM.name, spec.durable)
        assert (info.num_pending, info.num_ack_pending) == (2, 0), "the messages wait on the stream"

        holding = False
        await eventually(lambda: len(handled) == 2, "the messages handled once the hold ends")
        await eventually(lambda: all_settled(js, spec), "the consumer settled")


async def test_stop_ends_the_worker_while_it_holds(nats_conn, js, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    spec = ConsumerSpec(TEST_STREAM, f"test-stop-{tenant_id}", f"test.plumbing.stop.{tenant_id}")
    asked = asyncio.Event()

    def hold() -> float:
        asked.set()
        return 3600.0

    async def handle(msg) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("nothing is fetched while held")

    worker = PullWorker(js, nats_conn, spec, per_message(handle), hold=hold)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(asked.wait(), 5)
    finally:
        worker.stop()
        # Well inside the hour: a wait ends at stop().
        await asyncio.wait_for(task, 5)
        await js.delete_consumer(TEST_STREAM.name, spec.durable)


async def test_a_stream_larger_than_the_servers_file_store_stops_start_up_naming_it(js):
    # JetStream reserves a stream's byte cap at creation; the test server offers 64 GB.
    too_big = StreamSpec("TEST_TOO_BIG", ("test.too-big.>",), work_queue=True, max_bytes=100 * 1024**4)
    with pytest.raises(SystemExit, match="stream TEST_TOO_BIG needs 109951162777600 bytes of JetStream file storage"):
        await ensure_streams(js, [too_big])
    with pytest.raises(NotFoundError):
        await js.stream_info(too_big.name)
