"""A send from command to outcome: what reaches SendGrid, the message row and the published
outcome, and the commands refused before any call (a suppressed address, an unusable identity,
an invalid or foreign command). On real PostgreSQL and NATS against the fake SendGrid over HTTP.

The handlers are called directly with the bytes JetStream would deliver; "the worker retries"
is calling the handler again, as a redelivery would. One test runs a real PullWorker on a
consumer filtered to its own tenant (never the production `...>` consumers: the NATS server
is shared with the other services' tests).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC

import pytest
from dispatch_support import SIGNER, T0, command, identity, new_dispatcher, outcomes, received, stored
from prometheus_client import REGISTRY
from waiting import eventually

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.outbox import OutboxRelay
from dripiq_common.tokens import token_from_reply_address
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.suppressions import Suppressions


async def test_send_calls_sendgrid_once_with_every_tracking_key(engine, fake, sender, tenant_id):
    kicks: list[int] = []
    dispatcher = new_dispatcher(engine, sender, kicks)
    cmd = command(tenant_id, await identity(engine, tenant_id))

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())  # a redelivery

    [mail] = received(fake, cmd.message_id)
    assert mail.custom_args == {
        "tenant_id": tenant_id,
        "campaign_id": "camp-1",
        "step_index": "1",
        "message_id": cmd.message_id,
    }
    assert mail.to_emails == ["ada@example.com"]
    assert mail.categories == ["campaign"]
    token = token_from_reply_address(mail.reply_to or "")
    assert token is not None and SIGNER.parse_reply_token(token) == cmd.message_id
    assert mail.headers["Message-ID"] == f"<{cmd.message_id}@mid.test>"
    assert mail.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = mail.headers["List-Unsubscribe"].strip("<>").removeprefix("https://u.test/u/")
    assert SIGNER.parse_unsubscribe_token(unsubscribe) == (tenant_id, cmd.message_id)

    row = await stored(engine, cmd.message_id)
    assert (row.status, row.provider, row.provider_message_id) == (
        "sent",
        "sendgrid",
        mail.x_message_id,
    )
    assert (row.attempt_count, row.sent_at, row.idempotency_key) == (1, T0, cmd.message_id)
    assert row.rfc_message_id == f"<{cmd.message_id}@mid.test>"
    assert row.from_email == mail.from_email

    [fact] = await outcomes(engine, tenant_id)
    assert fact.kind == messages_pb2.OUTCOME_KIND_SENT
    assert (fact.message_id, fact.provider_message_id, fact.rfc_message_id) == (
        cmd.message_id,
        mail.x_message_id,
        row.rfc_message_id,
    )
    assert (fact.to_email, fact.subject, fact.step_index) == ("ada@example.com", "Hello Ada", 1)
    assert fact.occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert kicks == [1]


async def test_outcome_is_published_by_the_relay(engine, js, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id), product_id="product-1", strategist="openai")
    await dispatcher.handle_send(cmd.SerializeToString())

    relay = OutboxRelay(engine, js, outbox)
    while await relay.relay_once():
        pass

    msg = await js.get_last_msg("MESSAGE_OUTCOMES", Subjects.message_outcome(tenant_id))
    fact = messages_pb2.MessageOutcome.FromString(msg.data)
    assert (fact.message_id, fact.kind) == (cmd.message_id, messages_pb2.OUTCOME_KIND_SENT)
    assert (fact.product_id, fact.sender_identity_id, fact.strategist, fact.variant, fact.channel) == (
        "product-1",
        cmd.sender_identity_id,
        "openai",
        "",
        "email",
    )
    assert await outcomes(engine, tenant_id) == []


def outcome_count(kind: str) -> float:
    return REGISTRY.get_sample_value("dripiq_dispatcher_outcomes_total", {"kind": kind, "channel": "email"}) or 0


async def test_suppressed_address_is_not_sent(engine, fake, dispatcher, tenant_id):
    await Suppressions(engine, ManualClock(T0)).add(tenant_id, "ADA@Example.com", "")
    cmd = command(tenant_id, await identity(engine, tenant_id), to_email="ada@EXAMPLE.com")
    sent = command(tenant_id, await identity(engine, tenant_id), to_email="grace@example.com")
    before = outcome_count("suppressed"), outcome_count("sent")

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(sent.SerializeToString())
    # What an operator sees: dripiq_dispatcher_outcomes_total by kind and channel.
    assert (outcome_count("suppressed"), outcome_count("sent")) == (before[0] + 1, before[1] + 1)

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    assert (row.status, row.last_error, row.attempt_count) == (
        "suppressed",
        "address suppressed: manual",
        0,
    )
    [fact] = [f for f in await outcomes(engine, tenant_id) if f.message_id == cmd.message_id]
    assert (fact.kind, fact.reason) == (
        messages_pb2.OUTCOME_KIND_SUPPRESSED,
        "address suppressed: manual",
    )


@pytest.mark.parametrize("case", ["unverified", "missing", "other_tenant"])
async def test_unusable_identity_fails_naming_why(engine, fake, dispatcher, tenant_id, case):
    if case == "unverified":
        identity_id = await identity(engine, tenant_id, verified=False)
    elif case == "other_tenant":
        identity_id = await identity(engine, f"{tenant_id}-other")
    else:
        identity_id = str(uuid.uuid4())
    cmd = command(tenant_id, identity_id)

    await dispatcher.handle_send(cmd.SerializeToString())

    assert received(fake, cmd.message_id) == []
    row = await stored(engine, cmd.message_id)
    expected = "is not verified" if case == "unverified" else "does not exist for this tenant"
    assert row.status == "failed" and identity_id in row.last_error and expected in row.last_error
    [fact] = await outcomes(engine, tenant_id)
    assert (fact.kind, fact.reason) == (messages_pb2.OUTCOME_KIND_FAILED, row.last_error)


async def test_provider_rejection_fails_with_its_message(engine, fake, dispatcher, tenant_id):
    # Our check lets it through; SendGrid's stricter address rules answer 400.
    cmd = command(tenant_id, await identity(engine, tenant_id), to_email="ada@exa_mple.com")

    await dispatcher.handle_send(cmd.SerializeToString())
    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert row.status == "failed"
    assert row.last_error == "sendgrid 400: personalizations.0.to.0.email: Does not contain a valid address."
    assert row.attempt_count == 1
    [fact] = await outcomes(engine, tenant_id)
    assert (fact.kind, fact.reason) == (messages_pb2.OUTCOME_KIND_FAILED, row.last_error)


async def test_invalid_command_fails_with_an_outcome(engine, fake, dispatcher, tenant_id):
    cmd = command(tenant_id, await identity(engine, tenant_id), subject="")

    await dispatcher.handle_send(cmd.SerializeToString())

    row = await stored(engine, cmd.message_id)
    assert row.status == "failed" and "subject" in row.last_error
    assert [f.kind for f in await outcomes(engine, tenant_id)] == [messages_pb2.OUTCOME_KIND_FAILED]


async def test_unusable_bus_messages_are_permanent_errors(engine, dispatcher, tenant_id):
    suppressions_ = Suppressions(engine, ManualClock(T0))
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(b"\xff\xff not a protobuf")
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(command(tenant_id, "id", message_id="not-a-uuid").SerializeToString())
    with pytest.raises(PermanentMessageError):
        await suppressions_.handle_engagement(b"\xff\xff")
    # A message id another tenant already used is never touched from this one.
    cmd = command(tenant_id, await identity(engine, tenant_id))
    await dispatcher.handle_send(cmd.SerializeToString())
    stolen = command(f"{tenant_id}-x", "id", message_id=cmd.message_id)
    with pytest.raises(PermanentMessageError):
        await dispatcher.handle_send(stolen.SerializeToString())


async def test_worker_sends_once_despite_a_duplicate_command(engine, js, nats_conn, fake, dispatcher, tenant_id):
    subject = Subjects.dispatcher_send(tenant_id)
    spec = ConsumerSpec(Streams.DISPATCHER_SEND, f"test-{tenant_id}", subject)
    worker = PullWorker(
        js, nats_conn, spec, lambda msgs: dispatcher.handle_sends([m.data for m in msgs]), fetch_timeout=0.2
    )
    cmd = command(tenant_id, await identity(engine, tenant_id))
    # Two publishes the stream does not dedupe: as if the planner's relay sent it twice.
    for n in range(2):
        await js.publish(subject, cmd.SerializeToString(), headers={"Nats-Msg-Id": f"{cmd.message_id}:{n}"})

    await js.add_consumer(Streams.DISPATCHER_SEND.name, spec.config())
    task = asyncio.create_task(worker.run())
    try:

        async def drained() -> bool:
            info = await js.consumer_info(Streams.DISPATCHER_SEND.name, spec.durable)
            return info.num_ack_pending == 0 and info.num_pending == 0 and bool(info.delivered.stream_seq)

        await eventually(drained, "both copies delivered and acked")
    finally:
        worker.stop()
        await task
        await js.delete_consumer(Streams.DISPATCHER_SEND.name, spec.durable)

    assert len(received(fake, cmd.message_id)) == 1
    assert (await stored(engine, cmd.message_id)).status == "sent"
