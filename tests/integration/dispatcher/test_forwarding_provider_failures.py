"""A forward whose provider call fails or may have happened: one found `sending`, a redelivery
during the call and a timeout after the request left are never forwarded again (`unknown`);
an unavailable provider is retried up to the attempt limit; a rejection fails at once with
its reason. On real PostgreSQL and NATS against the fake SendGrid over HTTP (a slow one of its
own where the call has to take time).
"""

from __future__ import annotations

import asyncio

import pytest
from dispatch_support import TEST_ACCOUNT
from forwarding_support import MAX_ATTEMPTS, T0, forward_row, forwarded, forwards, new_identity, reply, sent_email
from waiting import eventually

from dripiq_common.clock import ManualClock
from dripiq_devtools.fake_sendgrid import FakeSendGrid
from dripiq_dispatcher import repository
from dripiq_dispatcher.failures import RetryLater
from dripiq_dispatcher.forwarding import ReplyForwarder
from dripiq_dispatcher.provider import AsyncSendGridSender


async def test_found_sending_is_never_forwarded_again_and_becomes_unknown(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    # A worker that committed `sending` and died during the provider call.
    key = {"tenant_id": tenant_id, "inbound_id": cmd.inbound_id}
    async with engine.begin() as conn:
        await repository.forwards.insert_forward(conn, **key, message_id=cmd.message_id, now=T0)
        await repository.forwards.update_forward(conn, **key, now=T0, status="sending", attempt_count=1)
    before = forwarded("unknown")

    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert "redelivered while a provider call was under way" in row.last_error
    assert forwarded("unknown") == before + 1


async def test_answer_settles_a_forward_a_redelivery_parked_during_the_call(engine, sender, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    async with FakeSendGrid(latency_seconds=0.3, authenticated_domains=TEST_ACCOUNT) as slow:
        patient = AsyncSendGridSender(api_key="SG.test", host=slow.url, concurrency=2, timeout_seconds=5)
        try:
            forwarder = ReplyForwarder(engine, ManualClock(T0), patient, MAX_ATTEMPTS)
            first = asyncio.create_task(forwarder.handle(cmd.SerializeToString()))

            async def calling() -> bool:
                row = await forward_row(engine, tenant_id, cmd.inbound_id)
                return row is not None and row.status == "sending"

            await eventually(calling, "the forward's provider call under way", every=0.01)
            # JetStream's ack wait ran out during the call and delivered the command again.
            await forwarder.handle(cmd.SerializeToString())
            assert (await forward_row(engine, tenant_id, cmd.inbound_id)).status == "unknown"
            await first
        finally:
            await patient.aclose()
        [mail] = forwards(slow, cmd.inbound_id)

    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.provider_message_id, row.attempt_count) == ("sent", mail.x_message_id, 1)


async def test_timeout_after_the_request_left_is_unknown_and_never_repeated(engine, sender, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    async with FakeSendGrid(latency_seconds=0.5, authenticated_domains=TEST_ACCOUNT) as slow:
        impatient = AsyncSendGridSender(api_key="SG.test", host=slow.url, concurrency=1, timeout_seconds=0.1)
        try:
            forwarder = ReplyForwarder(engine, ManualClock(T0), impatient, MAX_ATTEMPTS)
            await forwarder.handle(cmd.SerializeToString())
            # Answering at once now: a second call would be recorded.
            slow.latency_seconds = 0
            await forwarder.handle(cmd.SerializeToString())
        finally:
            await impatient.aclose()
        assert slow.requests_received == 1

    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count) == ("unknown", 1)
    assert "after the request was sent" in row.last_error


async def test_unavailable_provider_is_retried_then_forwarded_once(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    fake.fail_next(503)

    with pytest.raises(RetryLater):
        await forwarder.handle(cmd.SerializeToString())
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count, row.last_error) == ("queued", 1, "sendgrid 503: service unavailable")

    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    [mail] = forwards(fake, cmd.inbound_id)
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count, row.last_error, row.provider_message_id) == (
        "sent",
        2,
        None,
        mail.x_message_id,
    )


async def test_transient_failures_give_up_after_max_attempts(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    fake.fail_next(429, count=MAX_ATTEMPTS)

    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(RetryLater):
            await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count) == ("failed", MAX_ATTEMPTS)
    assert row.last_error == f"gave up after {MAX_ATTEMPTS} attempts: sendgrid 429: too many requests"


async def test_provider_rejection_fails_with_its_reason_and_is_not_repeated(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    # Our check lets the contact's address through; SendGrid's stricter rules answer 400.
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id), from_email="ada@exa_mple.com")
    requests = fake.requests_received
    before = forwarded("failed")

    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    assert fake.requests_received == requests + 1
    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count) == ("failed", 1)
    assert row.last_error == "sendgrid 400: reply_to.email: Does not contain a valid address."
    assert forwarded("failed") == before + 1
