"""The operators' dead-letter tool against real NATS: a message a consumer gave up on is
listed with why, replayed onto its subject with its headers once the cause is fixed, and
handled by the same consumer; or dropped."""

from __future__ import annotations

import asyncio
import contextlib
import io

from waiting import eventually

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb2
from dripiq_common import deadletters
from dripiq_common.bus.client import ensure_streams
from dripiq_common.bus.contract import ConsumerSpec, StreamSpec
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.errors import PermanentMessageError

TEST_STREAM = StreamSpec("TEST_DEAD_LETTERS", ("test.deadletters.>",), work_queue=True)


def cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert deadletters.main(list(argv)) == 0
    return out.getvalue()


async def test_a_dead_letter_is_listed_replayed_with_its_headers_and_handled(nats_conn, js, nats_url, tenant_id):
    await ensure_streams(js, [TEST_STREAM])
    subject = f"test.deadletters.{tenant_id}"
    durable = f"test-dlq-{tenant_id}"
    spec = ConsumerSpec(TEST_STREAM, durable, subject, max_deliver=3, retry_delays_seconds=(0.05,))
    fixed = False
    handled: list[tuple[bytes, dict[str, str]]] = []

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        if not fixed:
            raise PermanentMessageError("no handler for this version")
        handled.append((msg.data, dict(msg.headers or {})))

    await js.publish(subject, b"first", headers={"Dripiq-Timer-Key": "k-1"})
    await js.publish(subject, b"second")
    worker = PullWorker(js, nats_conn, spec, per_message(handler), fetch_timeout=0.2)
    task = asyncio.create_task(worker.run())
    try:

        async def both_dead() -> bool:
            return len(await deadletters.dead_letters(js, consumer=durable)) == 2

        await eventually(both_dead, "two dead letters")
        first, second = await deadletters.dead_letters(js, consumer=durable)
        assert (first.data, first.original_subject, first.error) == (b"first", subject, "no handler for this version")
        assert (first.stream, first.consumer, first.delivered) == (TEST_STREAM.name, durable, "1")
        listed = await asyncio.to_thread(cli, "--nats-url", nats_url, "list", "--consumer", durable)
        assert f"{TEST_STREAM.name}/{durable}  {subject}" in listed and "2 dead letter(s)" in listed

        fixed = True
        await deadletters.replay(js, first)

        async def replayed() -> bool:
            return bool(handled)

        await eventually(replayed, "the replayed message handled")
        [(data, headers)] = handled
        assert data == b"first"
        assert headers["Dripiq-Timer-Key"] == "k-1"
        assert headers[deadletters.REPLAYED_FROM] == str(first.sequence)

        dropped = await asyncio.to_thread(cli, "--nats-url", nats_url, "drop", str(second.sequence))
        assert f"dropped {second.sequence}" in dropped
        assert await deadletters.dead_letters(js, consumer=durable) == []
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)
        await js.delete_consumer(TEST_STREAM.name, durable)


async def test_a_payload_naming_another_tenant_than_its_subject_is_dead_lettered_unhandled(nats_conn, js, tenant_id):
    """A publisher allowed onto one tenant's subject cannot act for another: the consumer
    refuses the payload before any handler sees it, and says why in the dead letter."""
    stream = StreamSpec(
        "TEST_TENANT_GUARD", ("test.guard.send.>",), work_queue=True, payload=dispatcher_pb2.SendMessageCommand
    )
    await ensure_streams(js, [stream])
    durable = f"test-guard-{tenant_id}"
    subject = f"test.guard.send.{tenant_id}"
    spec = ConsumerSpec(stream, durable, subject, max_deliver=3, retry_delays_seconds=(0.05,))
    handled: list[str] = []

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        handled.append(dispatcher_pb2.SendMessageCommand.FromString(msg.data).message_id)

    foreign = dispatcher_pb2.SendMessageCommand(tenant_id="someone-else", message_id="m-foreign")
    own = dispatcher_pb2.SendMessageCommand(tenant_id=tenant_id, message_id="m-own")
    await js.publish(subject, foreign.SerializeToString())
    await js.publish(subject, own.SerializeToString())
    worker = PullWorker(js, nats_conn, spec, per_message(handler), fetch_timeout=0.2)
    task = asyncio.create_task(worker.run())
    try:

        async def refused() -> list[deadletters.DeadLetter]:
            return await deadletters.dead_letters(js, consumer=durable)

        [dead] = await eventually(refused, "the foreign payload dead-lettered")
        await eventually(lambda: handled, "the tenant's own payload handled")
    finally:
        worker.stop()
        await task
    assert handled == ["m-own"]
    assert dead.data == foreign.SerializeToString()
    assert dead.error == f"payload names tenant 'someone-else' on a subject of tenant {tenant_id!r}"
