"""The forward commands as the bus delivers them: unusable or cross-tenant commands are permanent
errors, a reply without a usable sender address fails without a call, a reply naming no tenant
takes its message's tenant (only on the by-message subject), and a real PullWorker on a
consumer filtered to its own tenant forwards once despite a duplicate command. On real
PostgreSQL and NATS against the fake SendGrid over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from forwarding_support import T0, content, forward_row, forwarded, forwards, new_identity, reply, sent_email
from waiting import eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_dispatcher.forwarding import ReplyForwardingSettings


async def test_a_reply_without_a_usable_sender_address_fails_without_a_call(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id), from_email="not an address")
    requests = fake.requests_received

    await forwarder.handle(cmd.SerializeToString())

    assert fake.requests_received == requests
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert row.status == "failed" and row.last_error.startswith("invalid forward command: from_email")


async def test_unusable_commands_are_permanent_errors(engine, forwarder, tenant_id):
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(b"\xff\xff not a protobuf")
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(reply(tenant_id, "m-1", inbound_id="").SerializeToString())
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(reply("bad tenant!", "m-1").SerializeToString())
    # A payload naming one tenant on another tenant's subject is never trusted.
    cmd = reply(tenant_id, "m-1")
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(cmd.SerializeToString(), subject=Subjects.dispatcher_forward(f"{tenant_id}-x"))
    assert await forward_row(engine, tenant_id, cmd.inbound_id) is None


async def test_a_reply_naming_no_tenant_takes_the_tenant_of_its_message(engine, fake, sender, forwarder, tenant_id):
    """The events service had no record of the message the signed reply address names: the
    command names no tenant, and the dispatcher routes it as the message's own tenant's."""
    identity_id = await new_identity(engine, tenant_id)
    await ReplyForwardingSettings(engine, ManualClock(T0)).set(
        pb.ReplyForwarding(tenant_id=tenant_id, catch_all="inbox@acme-corp.test")
    )
    message_id = await sent_email(engine, sender, tenant_id, identity_id)
    cmd = reply("", message_id, campaign_id="")

    await forwarder.handle(cmd.SerializeToString(), subject=Subjects.DISPATCHER_FORWARD_BY_MESSAGE)
    await forwarder.handle(cmd.SerializeToString(), subject=Subjects.DISPATCHER_FORWARD_BY_MESSAGE)

    [mail] = forwards(fake, cmd.inbound_id)
    assert mail.to_emails == ["inbox@acme-corp.test"]
    assert mail.custom_args["tenant_id"] == tenant_id
    assert "step 2 of campaign camp-7" in content(mail, "text/plain")
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).status == "sent"


async def test_a_reply_naming_no_tenant_and_no_known_message_is_dropped(engine, fake, forwarder, tenant_id):
    cmd = reply("", str(uuid.uuid4()))
    requests, unroutable = fake.requests_received, forwarded("unroutable")

    await forwarder.handle(cmd.SerializeToString(), subject=Subjects.DISPATCHER_FORWARD_BY_MESSAGE)

    assert fake.requests_received == requests
    assert forwarded("unroutable") == unroutable + 1
    # Only the by-message subject may leave the tenant to the dispatcher.
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(cmd.SerializeToString(), subject=Subjects.dispatcher_forward(tenant_id))
    # And on it, a command naming a tenant is not trusted (any tenant could name another's).
    with pytest.raises(PermanentMessageError):
        await forwarder.handle(
            reply(tenant_id, cmd.message_id).SerializeToString(), subject=Subjects.DISPATCHER_FORWARD_BY_MESSAGE
        )


async def test_worker_forwards_once_despite_a_duplicate_command(
    engine, js, nats_conn, fake, sender, forwarder, tenant_id
):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    subject = Subjects.dispatcher_forward(tenant_id)
    spec = ConsumerSpec(Streams.DISPATCHER_FORWARD, f"test-{tenant_id}", subject)
    worker = PullWorker(
        js,
        nats_conn,
        spec,
        per_message(lambda msg: forwarder.handle(msg.data, subject=msg.subject)),
        batch_size=1,
        batches_in_flight=4,
        fetch_timeout=0.2,
    )
    # Two publishes the stream does not dedupe: as if the events relay sent it twice.
    for n in range(2):
        await js.publish(subject, cmd.SerializeToString(), headers={"Nats-Msg-Id": f"{cmd.inbound_id}:{n}"})

    await js.add_consumer(Streams.DISPATCHER_FORWARD.name, spec.config())
    task = asyncio.create_task(worker.run())
    try:

        async def drained() -> bool:
            info = await js.consumer_info(Streams.DISPATCHER_FORWARD.name, spec.durable)
            return info.num_ack_pending == 0 and info.num_pending == 0 and bool(info.delivered.stream_seq)

        await eventually(drained, "both copies delivered and acked")
    finally:
        worker.stop()
        await task
        await js.delete_consumer(Streams.DISPATCHER_FORWARD.name, spec.durable)

    assert len(forwards(fake, cmd.inbound_id)) == 1
    # The second delivery found the first settled, or under way (then parked it as unknown,
    # and the first call's answer settled it).
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).status == "sent"
