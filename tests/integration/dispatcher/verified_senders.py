"""Fixtures for modules whose tests verify sender identities: a fake SendGrid per test whose
account has the test domains authenticated (a test may change them), and a sender to it.
A module takes them by importing them; they replace the package's shared `fake` and `sender`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from dispatch_support import TEST_KEY, fake_with_test_domains

from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher.provider import AsyncSendGridSender


@pytest_asyncio.fixture(name="fake")
async def fake_with_domains() -> AsyncIterator[FakeSendGrid]:
    async with fake_with_test_domains() as server:
        yield server


@pytest_asyncio.fixture(name="sender")
async def sender_to_fake(fake: FakeSendGrid) -> AsyncIterator[AsyncSendGridSender]:
    pool = AsyncSendGridSender(api_key=TEST_KEY, host=fake.url, concurrency=2, timeout_seconds=5)
    yield pool
    await pool.aclose()


def set_domain_valid(fake: FakeSendGrid, domain: str, valid: bool) -> None:
    """The domain's authentication at the fake, as SendGrid would report it after DNS changed."""
    [authenticated] = [d for d in fake.accounts.parent(TEST_KEY).domains if d.domain == domain]
    authenticated.valid = valid
    authenticated.dns_ready = valid
