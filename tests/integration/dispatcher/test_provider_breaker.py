"""While SendGrid is down the send worker stops taking sends, then probes: a real PullWorker on
NATS, the dispatcher on PostgreSQL and the fake SendGrid answering 503 until it recovers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio
from dispatch_support import command, identity, new_dispatcher, received, stored
from waiting import eventually

from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.breaker import BreakerState, ProviderBreaker
from dripiq_dispatcher.provider import AsyncSendGridSender


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[AsyncSendGridSender]:
    pool = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


async def test_an_outage_stops_the_worker_fetching_and_a_probe_resumes_it(
    engine, js, nats_conn, fake, sender, tenant_id
):
    breaker = ProviderBreaker(threshold=4, cooldown=0.5, max_cooldown=1.0, probe_timeout=5)
    dispatcher = new_dispatcher(engine, sender)
    dispatcher.breaker = breaker
    subject = Subjects.dispatcher_send(tenant_id)
    spec = ConsumerSpec(Streams.DISPATCHER_SEND, f"test-{tenant_id}", subject)
    worker = PullWorker(
        js,
        nats_conn,
        spec,
        lambda msgs: dispatcher.handle_sends([m.data for m in msgs]),
        batch_size=2,
        fetch_timeout=0.2,
        hold=breaker.hold,
    )
    ident = await identity(engine, tenant_id)
    cmds = [command(tenant_id, ident) for _ in range(20)]
    for cmd in cmds:
        await js.publish(subject, cmd.SerializeToString())
    fake.fail_next(503, count=1000)
    requests = fake.requests_received

    await js.add_consumer(Streams.DISPATCHER_SEND.name, spec.config())
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: breaker.state == BreakerState.OPEN, "the breaker opened")
        failed_before_open = fake.requests_received - requests
        # Open: a few batches at most were tried (4 failures in a row open it; batches of 2).
        assert failed_before_open <= 6
        # While SendGrid stays down, each cool-down lets one batch out as a probe, whose
        # failure opens the breaker again: two failed probes, then count what they sent.
        await eventually(lambda: breaker.openings >= 3, "two probes failed", seconds=30)
        probes = breaker.openings - 1
        probed = fake.requests_received - requests - failed_before_open
        assert 1 <= probed <= 2 * (probes + 1), (probes, probed)
        info = await js.consumer_info(Streams.DISPATCHER_SEND.name, spec.durable)
        assert info.num_pending >= 20 - failed_before_open - probed - 2, "the rest waits on the stream"

        # SendGrid is back: the next probe is answered, the breaker closes, the stream drains.
        fake.clear_failures()

        async def drained() -> bool:
            info = await js.consumer_info(Streams.DISPATCHER_SEND.name, spec.durable)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(drained, "the stream drained after SendGrid came back", seconds=30)
    finally:
        fake.clear_failures()
        worker.stop()
        await task
        await js.delete_consumer(Streams.DISPATCHER_SEND.name, spec.durable)

    assert breaker.state == BreakerState.CLOSED
    statuses = [(await stored(engine, c.message_id)).status for c in cmds]
    # Each message met SendGrid at most once while it was down (then waits on its retry timer),
    # and every one fetched after the recovery went out once.
    assert set(statuses) <= {"sent", "queued"}
    assert statuses.count("queued") == fake.requests_received - requests - statuses.count("sent")
    assert statuses.count("sent") >= 20 - 12
    assert all(len(received(fake, c.message_id)) <= 1 for c in cmds)
