"""Fixtures for the fake SendGrid tests: a running fake, a fake that only signs, and a webhook receiver.

The fake SendGrid must satisfy the real `sendgrid` client and SendGrid's own webhook verifier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from fake_sendgrid_support import SENDER_ACCOUNT, Captured, Receiver

from dripiq_devtools.fake_sendgrid import FakeSendGrid


@pytest.fixture
async def fake() -> AsyncIterator[FakeSendGrid]:
    async with FakeSendGrid(authenticated_domains=SENDER_ACCOUNT) as server:
        yield server


@pytest.fixture
def fake_key() -> FakeSendGrid:
    """A fake that is never started: signing needs only its key."""
    return FakeSendGrid(authenticated_domains=SENDER_ACCOUNT)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    stand_in = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        stand_in.requests.append(Captured(await request.read(), dict(request.headers)))
        if stand_in.refusals > 0:
            stand_in.refusals -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/webhooks/sendgrid", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stand_in.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/sendgrid"
    yield stand_in
    await runner.cleanup()
