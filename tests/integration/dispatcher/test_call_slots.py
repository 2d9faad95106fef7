"""Call slots: batches beyond those whose calls fill the pool wait, fetched but not admitted, and
never put more calls in flight than the pool has connections (call_slots.py, decision 0059)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from dispatch_support import TEST_ACCOUNT, command, identity, new_dispatcher, new_sender, received, stored

from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import sending
from dripiq_dispatcher.accounts import ProviderAccount
from dripiq_dispatcher.call_slots import CallSlots
from dripiq_dispatcher.provider import MailSender


@dataclass
class Counted:
    """The real sender, counting its calls in flight (the pool's own limit would hide an excess
    by queueing: this sees what the send path asked for)."""

    inner: MailSender
    now: int = 0
    most: int = 0

    async def send(self, mail: dict[str, Any], account: ProviderAccount | None = None) -> str | None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.inner.send(mail, account)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_batch_takes_all_its_slots_or_none_first_come_first_served():
    slots = CallSlots(4)
    await slots.take(3)
    big = asyncio.ensure_future(slots.take(4))
    small = asyncio.ensure_future(slots.take(1))
    await asyncio.sleep(0)
    # One slot is free, but the small batch queues behind the big one instead of starving it.
    assert (big.done(), small.done(), slots.free) == (False, False, 1)
    slots.give(3)
    await asyncio.sleep(0)
    assert (big.done(), small.done(), slots.free) == (True, False, 0)
    slots.give(4)
    await small
    assert slots.free == 3


async def test_a_batch_cancelled_while_waiting_takes_nothing_and_lets_the_next_go():
    slots = CallSlots(2)
    await slots.take(2)
    first = asyncio.ensure_future(slots.take(2))
    second = asyncio.ensure_future(slots.take(1))
    await asyncio.sleep(0)
    slots.give(1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert slots.free == 0
    slots.give(2)
    assert slots.free == 2


async def test_more_than_the_pool_or_more_given_back_than_taken_is_refused():
    slots = CallSlots(2)
    with pytest.raises(ValueError, match="cannot take 3 of 2"):
        await slots.take(3)
    with pytest.raises(RuntimeError, match="more given back than taken"):
        slots.give(1)
    with pytest.raises(ValueError, match="at least 1"):
        CallSlots(0)


@pytest_asyncio.fixture
async def slow_fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid(latency_seconds=0.2, authenticated_domains=TEST_ACCOUNT) as server:
        yield server


async def test_batches_together_never_call_more_than_the_slots_and_each_sends_once(engine, slow_fake, tenant_id):
    pool = new_sender(slow_fake.url, concurrency=16, timeout_seconds=5)
    counted = Counted(pool)
    dispatcher = new_dispatcher(engine, counted)
    dispatcher.call_slots = CallSlots(4)
    sender_id = await identity(engine, tenant_id)
    batches = [[command(tenant_id, sender_id, to_email=f"b{b}m{n}@example.com") for n in range(4)] for b in range(3)]
    try:
        results = await asyncio.gather(
            *(dispatcher.handle_sends([c.SerializeToString() for c in batch]) for batch in batches)
        )
    finally:
        await pool.aclose()

    assert results == [[None] * 4] * 3
    assert counted.most == 4
    assert dispatcher.call_slots.free == 4
    for batch in batches:
        for cmd in batch:
            assert len(received(slow_fake, cmd.message_id)) == 1
            assert (await stored(engine, cmd.message_id)).status == "sent"


async def test_a_batch_waiting_behind_a_hung_provider_tells_jetstream_and_sends_once(
    engine, slow_fake, tenant_id, monkeypatch
):
    # SendGrid hangs past the send timeout: the first batch's calls end unknown; the second
    # waits for their slots, saying it is in progress meanwhile, and is only admitted then.
    slow_fake.latency_seconds = 1.5
    monkeypatch.setattr(sending, "IN_PROGRESS_EVERY_SECONDS", 0.1)
    pool = new_sender(slow_fake.url, concurrency=8, timeout_seconds=0.6)
    dispatcher = new_dispatcher(engine, Counted(pool))
    dispatcher.call_slots = CallSlots(2)
    sender_id = await identity(engine, tenant_id)
    first = [command(tenant_id, sender_id, to_email=f"first{n}@example.com") for n in range(2)]
    second = [command(tenant_id, sender_id, to_email=f"second{n}@example.com") for n in range(2)]
    touched = 0

    async def in_progress() -> None:
        nonlocal touched
        touched += 1

    try:
        running = asyncio.ensure_future(dispatcher.handle_sends([c.SerializeToString() for c in first]))
        for _ in range(100):  # the first batch takes its slots before its first I/O
            if not dispatcher.call_slots.free:
                break
            await asyncio.sleep(0.01)
        assert dispatcher.call_slots.free == 0
        waiting = await dispatcher.handle_sends([c.SerializeToString() for c in second], in_progress=in_progress)
        assert await running == [None, None]
        assert waiting == [None, None]
    finally:
        await pool.aclose()

    assert touched >= 1
    assert dispatcher.call_slots.free == 2
    for cmd in first + second:
        row = await stored(engine, cmd.message_id)
        # Called once each, never again: the rows wait for SendGrid's events (decision 0028).
        assert (row.status, row.attempt_count) == ("unknown", 1)
