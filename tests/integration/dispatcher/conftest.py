"""The dispatcher tests' shared fixtures, each one per test module where it is module-scoped: a
fake SendGrid on 127.0.0.1, a sender pool on it, the send path and the reply forwarder on them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from dispatch_support import fake_with_test_domains, new_dispatcher, new_sender
from forwarding_support import MAX_ATTEMPTS, T0
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.forwarding import ReplyForwarder
from dripiq_dispatcher.provider import MailSender
from dripiq_dispatcher.sending import Sends


@pytest_asyncio.fixture(scope="module")
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with fake_with_test_domains() as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[MailSender]:
    pool = new_sender(fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


@pytest.fixture
def dispatcher(engine: AsyncEngine, sender: MailSender) -> Sends:
    return new_dispatcher(engine, sender)


@pytest.fixture
def forwarder(engine: AsyncEngine, sender: MailSender) -> ReplyForwarder:
    return ReplyForwarder(engine, ManualClock(T0), sender, MAX_ATTEMPTS)
