"""A send whose provider call may have happened is never made again: a message found `sending`,
a timeout after the request left, and a redelivery arriving during the call all leave it
`unknown`, and the call's own answer still settles it. On real PostgreSQL against the fake
SendGrid over HTTP (a slow one of its own where the call has to take time).
"""

from __future__ import annotations

import asyncio

from dispatch_support import T0, TEST_ACCOUNT, command, identity, new_dispatcher, new_sender, outcomes, received, stored
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import convert, repository
from dripiq_dispatcher.models import messages


async def test_found_sending_is_never_sent_again(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id))
    # A worker that committed `sending` and died during the provider call.
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[convert.new_message(cmd)], now=T0)
        await conn.execute(
            update(messages).where(messages.c.message_id == cmd.message_id).values(status="sending", attempt_count=1)
        )

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert await outcomes(engine, tenant_id) == []


async def test_timeout_after_the_request_left_is_unknown_and_never_repeated(engine, tenant_id):
    async with FakeSendGrid(latency_seconds=0.5, authenticated_domains=TEST_ACCOUNT) as slow:
        impatient = new_sender(slow.url, concurrency=1, timeout_seconds=0.1)
        try:
            dispatcher = new_dispatcher(engine, impatient)
            cmd = command(tenant_id, await identity(engine, tenant_id))
            await dispatcher.handle_send(cmd.SerializeToString())
            # Answering at once now: a second call would be recorded.
            slow.latency_seconds = 0
            await dispatcher.handle_send(cmd.SerializeToString())
        finally:
            await impatient.aclose()
        assert received(slow, cmd.message_id) == []

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert "after the request was sent" in row.last_error
    # Kept while unknown, to be sent again as it was should SendGrid never have got it.
    assert row.unconfirmed_command == cmd.SerializeToString()
    assert await outcomes(engine, tenant_id) == []


async def test_answer_settles_a_message_a_redelivery_parked_during_the_call(engine, tenant_id):
    async with FakeSendGrid(latency_seconds=0.3, authenticated_domains=TEST_ACCOUNT) as slow:
        patient = new_sender(slow.url, concurrency=2, timeout_seconds=5)
        try:
            dispatcher = new_dispatcher(engine, patient)
            cmd = command(tenant_id, await identity(engine, tenant_id))
            first = asyncio.create_task(dispatcher.handle_send(cmd.SerializeToString()))

            async def calling() -> bool:
                return await stored_status(engine, cmd.message_id) == "sending"

            await eventually(calling, "the provider call under way", every=0.01)
            # JetStream's ack wait ran out during the call and delivered the command again.
            await dispatcher.handle_send(cmd.SerializeToString())
            assert await stored_status(engine, cmd.message_id) == "unknown"
            await first
        finally:
            await patient.aclose()
        [mail] = received(slow, cmd.message_id)

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider_message_id, row.attempt_count) == (
        "sent",
        mail.x_message_id,
        1,
    )
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [messages_pb2.OUTCOME_KIND_SENT]


async def stored_status(engine: AsyncEngine, message_id: str) -> str | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(select(messages.c.status).where(messages.c.message_id == message_id))
        ).scalar_one_or_none()
