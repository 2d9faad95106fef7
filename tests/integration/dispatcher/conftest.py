"""A fake SendGrid on 127.0.0.1 for the dispatcher's tests, one per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from dripiq_devtools.fake_sendgrid import FakeSendGrid


@pytest_asyncio.fixture(scope="module")
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid() as server:
        yield server
