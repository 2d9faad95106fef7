"""Replies forwarded to a person, on real PostgreSQL and NATS against the fake SendGrid over HTTP.

A campaign email is sent through the real send pipeline first, so the forward finds the
message row and its identity as production does. The forward handler is called directly
with the bytes JetStream would deliver; "the worker retries" is calling it again, as a
redelivery would. One test runs a real PullWorker on a consumer filtered to its own tenant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.field_mask_pb2 import FieldMask
from grpc_support import dispatcher_api, violated_fields
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine
from waiting import eventually

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import dispatcher_service_pb2_grpc as pb_grpc
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import ConsumerSpec, Streams, Subjects
from dripiq_common.bus.worker import PullWorker, per_message
from dripiq_common.clock import ManualClock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import AcceptedMessage, FakeSendGrid
from dripiq_dispatcher import campaign_mail, domain, failures, forward_mail, repository
from dripiq_dispatcher.failures import RetryLater
from dripiq_dispatcher.forwarding import ReplyForwarder, ReplyForwardingSettings
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender
from dripiq_dispatcher.sending import Sends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2030, 1, 2, 9, 30, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
MAX_ATTEMPTS = 3


@pytest_asyncio.fixture(scope="module")
async def sender(fake: FakeSendGrid) -> AsyncIterator[MailSender]:
    pool = AsyncSendGridSender(api_key="SG.test", host=fake.url, concurrency=4, timeout_seconds=5)
    yield pool
    await pool.aclose()


@pytest.fixture
def forwarder(engine: AsyncEngine, sender: MailSender) -> ReplyForwarder:
    return ReplyForwarder(engine, ManualClock(T0), sender, MAX_ATTEMPTS)


@pytest.fixture
def settings(engine: AsyncEngine) -> ReplyForwardingSettings:
    return ReplyForwardingSettings(engine, ManualClock(T0))


async def new_identity(engine: AsyncEngine, tenant_id: str, *, forward_to: str = "", verified: bool = True) -> str:
    identities = SenderIdentities(engine, ManualClock(T0))
    created = await identities.create(
        pb.CreateSenderIdentityRequest(
            tenant_id=tenant_id,
            from_email=f"sales-{uuid.uuid4().hex[:6]}@acme.test",
            from_name="Sam at Acme",
            forward_to=forward_to,
        )
    )
    if verified:
        await identities.verify(tenant_id, created.sender_identity_id)
    return created.sender_identity_id


async def sent_email(engine: AsyncEngine, sender: MailSender, tenant_id: str, identity_id: str) -> str:
    """A campaign email sent through the send pipeline; its message id."""
    dispatcher = Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, failures.RetryPolicy())
    command = messages_pb2.SendMessageCommand(
        tenant_id=tenant_id,
        message_id=str(uuid.uuid4()),
        campaign_id="camp-7",
        step_index=2,
        contact_id="contact-1",
        channel="email",
        to_email="ada@example.com",
        to_name="Ada Lovelace",
        sender_identity_id=identity_id,
        subject="Hello Ada",
        body_text="Hi Ada, shall we talk?",
    )
    await dispatcher.handle_send(command.SerializeToString())
    return command.message_id


def reply(tenant_id: str, message_id: str, **overrides: Any) -> messages_pb2.ForwardReplyCommand:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "inbound_id": str(uuid.uuid4().int % 10**9),
        "message_id": message_id,
        "campaign_id": "camp-7",
        "from_email": "ada@example.com",
        "subject": "Re: Hello Ada",
        "text": "Yes, let's talk on Tuesday.\n\nAda",
        "html": '<p>Yes, let\'s talk on <b>Tuesday</b>.</p><script>alert("x")</script><p>Ada</p>',
        "reply_class": "interested",
    }
    fields.update(overrides)
    command = messages_pb2.ForwardReplyCommand(**fields)
    if "received_at" not in overrides:
        command.received_at.FromDatetime(RECEIVED)
    return command


def forwards(fake: FakeSendGrid, inbound_id: str) -> list[AcceptedMessage]:
    return [
        m
        for m in fake.messages
        if m.custom_args.get("kind") == "reply_forward" and m.custom_args.get("inbound_id") == inbound_id
    ]


def content(mail: AcceptedMessage, kind: str) -> str:
    [value] = [c["value"] for c in mail.payload["content"] if c["type"] == kind]
    return str(value)


async def forward_row(engine: AsyncEngine, tenant_id: str, inbound_id: str) -> Any:
    async with engine.connect() as conn:
        return await repository.forwards.get_forward(conn, tenant_id=tenant_id, inbound_id=inbound_id)


def forwarded(result: str) -> float:
    return REGISTRY.get_sample_value("dripiq_dispatcher_reply_forwards_total", {"result": result}) or 0.0


async def test_reply_is_forwarded_once_to_the_identitys_mailbox(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    message_id = await sent_email(engine, sender, tenant_id, identity_id)
    cmd = reply(tenant_id, message_id)
    before = forwarded("sent")

    await forwarder.handle(cmd.SerializeToString(), subject=Subjects.dispatcher_forward(tenant_id))
    await forwarder.handle(cmd.SerializeToString())  # a redelivery

    [mail] = forwards(fake, cmd.inbound_id)
    [campaign_mail] = [m for m in fake.messages if m.custom_args.get("message_id") == message_id]
    assert mail.from_email == campaign_mail.from_email
    assert mail.payload["from"]["name"] == "Sam at Acme"
    assert mail.to_emails == ["sam@acme-corp.test"]
    assert mail.payload["reply_to"] == {"email": "ada@example.com", "name": "Ada Lovelace"}
    assert mail.subject == "Fwd: Re: Hello Ada"
    # Nothing about it looks like a campaign step's mail to the events service.
    assert mail.custom_args == {"tenant_id": tenant_id, "inbound_id": cmd.inbound_id, "kind": "reply_forward"}
    assert mail.categories == ["reply-forward"]
    assert mail.headers["Auto-Submitted"] == "auto-forwarded"
    assert "List-Unsubscribe" not in mail.headers
    assert mail.payload["tracking_settings"] == {
        "open_tracking": {"enable": False},
        "click_tracking": {"enable": False, "enable_text": False},
        "subscription_tracking": {"enable": False},
    }

    summary = (
        'Reply from Ada Lovelace <ada@example.com> to step 2 of campaign camp-7 ("Hello Ada"), '
        "classified interested, received 2030-01-02 09:30 UTC."
    )
    text = content(mail, "text/plain")
    assert text.startswith(summary + "\n")
    assert "> Yes, let's talk on Tuesday.\n>\n> Ada\n" in text
    assert "Unsubscribe" not in text
    markup = content(mail, "text/html")
    assert "Reply from Ada Lovelace &lt;ada@example.com&gt;" in markup
    assert "<blockquote><p>Yes, let's talk on <b>Tuesday</b>.</p><p>Ada</p></blockquote>" in markup.replace(
        "&#39;", "'"
    )
    assert "<script" not in markup and "Unsubscribe" not in markup

    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.to_email, row.from_email, row.sender_identity_id) == (
        "sent",
        "sam@acme-corp.test",
        mail.from_email,
        identity_id,
    )
    assert (row.provider, row.provider_message_id, row.attempt_count, row.sent_at, row.last_error) == (
        "sendgrid",
        mail.x_message_id,
        1,
        T0,
        None,
    )
    assert row.message_id == message_id
    assert forwarded("sent") == before + 1


async def test_without_forward_to_the_reply_goes_to_the_tenants_catch_all(
    engine, fake, sender, forwarder, settings, tenant_id
):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    # Another tenant's catch-all never applies here.
    await settings.set(pb.ReplyForwarding(tenant_id=f"{tenant_id}-x", catch_all="other@elsewhere.test"))
    message_id = await sent_email(engine, sender, tenant_id, await new_identity(engine, tenant_id))
    cmd = reply(tenant_id, message_id, html="", text="Plain <b>text</b> only\nsecond line", reply_class="")

    await forwarder.handle(cmd.SerializeToString())

    [mail] = forwards(fake, cmd.inbound_id)
    assert mail.to_emails == ["replies@acme-corp.test"]
    # Without HTML, the text is shown escaped; without a class, it says so.
    assert "<blockquote>Plain &lt;b&gt;text&lt;/b&gt; only<br>\nsecond line</blockquote>" in content(mail, "text/html")
    assert "not classified" in content(mail, "text/plain")
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).to_email == "replies@acme-corp.test"


async def test_the_identitys_forward_to_wins_over_the_catch_all(engine, fake, sender, forwarder, settings, tenant_id):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))

    await forwarder.handle(cmd.SerializeToString())

    assert [m.to_emails for m in forwards(fake, cmd.inbound_id)] == [["sam@acme-corp.test"]]


async def test_with_nowhere_to_go_it_is_unroutable_and_nothing_is_sent(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id)
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, identity_id))
    before = forwarded("unroutable")

    await forwarder.handle(cmd.SerializeToString())
    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.attempt_count, row.to_email) == ("unroutable", 0, None)
    assert row.last_error.startswith(f"sender identity {identity_id!r} (sales-")
    assert row.last_error.endswith(
        "has no forward_to and the tenant has no catch-all (DispatcherService/SetReplyForwarding)"
    )
    assert forwarded("unroutable") == before + 1


async def test_an_emptied_catch_all_routes_nothing(engine, fake, sender, forwarder, settings, tenant_id):
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all=""))
    cmd = reply(tenant_id, await sent_email(engine, sender, tenant_id, await new_identity(engine, tenant_id)))

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    assert (await forward_row(engine, tenant_id, cmd.inbound_id)).status == "unroutable"


async def test_another_tenants_message_is_never_used(engine, fake, sender, forwarder, settings, tenant_id):
    owner = f"{tenant_id}-owner"
    message_id = await sent_email(
        engine, sender, owner, await new_identity(engine, owner, forward_to="owner@acme-corp.test")
    )
    # Even with a catch-all of its own, a tenant cannot have another tenant's message forwarded.
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    cmd = reply(tenant_id, message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert (row.status, row.last_error) == ("unroutable", f"message {message_id!r} does not exist for this tenant")
    assert await forward_row(engine, owner, cmd.inbound_id) is None


async def test_a_message_naming_another_tenants_identity_is_unroutable(engine, fake, forwarder, settings, tenant_id):
    foreign = await new_identity(engine, f"{tenant_id}-x", forward_to="x@elsewhere.test")
    await settings.set(pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test"))
    # A row no send would have admitted, written as it is to prove the join stays in the tenant.
    message = domain.NewMessage(
        message_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        campaign_id="camp-7",
        step_index=0,
        contact_id="c",
        channel="email",
        to_email="ada@example.com",
        to_name="",
        sender_identity_id=foreign,
        subject="Hello",
        body_text="Hi",
        body_html="",
        categories=(),
    )
    async with engine.begin() as conn:
        await repository.messages.insert_messages(conn, batch=[message], now=T0)
    cmd = reply(tenant_id, message.message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert row.status == "unroutable" and f"sender identity {foreign!r}" in row.last_error


async def test_an_unverified_identity_forwards_nothing(engine, fake, sender, forwarder, tenant_id):
    identity_id = await new_identity(engine, tenant_id, forward_to="sam@acme-corp.test")
    message_id = await sent_email(engine, sender, tenant_id, identity_id)
    async with engine.begin() as conn:
        await repository.identities.update_identity(
            conn, tenant_id=tenant_id, identity_id=identity_id, values={"verified": False}, now=T0
        )
    cmd = reply(tenant_id, message_id)

    await forwarder.handle(cmd.SerializeToString())

    assert forwards(fake, cmd.inbound_id) == []
    row = await forward_row(engine, tenant_id, cmd.inbound_id)
    assert row.status == "unroutable" and "is not verified" in row.last_error


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
    async with FakeSendGrid(latency_seconds=0.3) as slow:
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
    async with FakeSendGrid(latency_seconds=0.5) as slow:
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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Re: Hello Ada", "Fwd: Re: Hello Ada"),
        ("Fwd: Re: Hello Ada", "Fwd: Re: Hello Ada"),
        ("FW: Hello", "FW: Hello"),
        ("fwd:Hello", "fwd:Hello"),
        ("  Re:\r\n  Hello\tAda ", "Fwd: Re: Hello Ada"),
        ("", "Fwd: (no subject)"),
        ("Forward thinking", "Fwd: Forward thinking"),
    ],
)
def test_forward_subject_is_one_line_and_never_doubled(given, expected):
    assert forward_mail.forward_subject(given) == expected


# -- the APIs: forward_to on identities, the tenant's catch-all ---------------------------------


@pytest_asyncio.fixture(scope="module")
async def channel(engine, sender: MailSender) -> AsyncIterator[grpc.aio.Channel]:
    dispatcher = Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, failures.RetryPolicy())
    async with dispatcher_api(engine, dispatcher, ManualClock(T0)) as chan:
        yield chan


@pytest.fixture
def identities(channel: grpc.aio.Channel) -> pb_grpc.SenderIdentityServiceStub:
    return pb_grpc.SenderIdentityServiceStub(channel)


@pytest.fixture
def api(channel: grpc.aio.Channel) -> pb_grpc.DispatcherServiceStub:
    return pb_grpc.DispatcherServiceStub(channel)


async def invalid(call, request) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return violated_fields(raised.value)


async def test_forward_to_is_set_at_create_kept_by_an_empty_mask_and_changed_by_name(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(
                tenant_id=tenant_id, from_email="sam@acme.test", from_name="Sam", forward_to=" Sam@Acme-Corp.test "
            )
        )
    ).sender_identity
    assert created.forward_to == "Sam@Acme-Corp.test"
    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity.forward_to == "Sam@Acme-Corp.test"

    # An empty mask updates what it always did; a caller unaware of forward_to never clears it.
    renamed = (
        await identities.UpdateSenderIdentity(
            pb.UpdateSenderIdentityRequest(
                sender_identity=pb.SenderIdentity(
                    tenant_id=tenant_id, sender_identity_id=created.sender_identity_id, from_name="Samuel"
                )
            )
        )
    ).sender_identity
    assert (renamed.from_name, renamed.forward_to) == ("Samuel", "Sam@Acme-Corp.test")

    def update(forward_to: str) -> pb.UpdateSenderIdentityRequest:
        return pb.UpdateSenderIdentityRequest(
            sender_identity=pb.SenderIdentity(
                tenant_id=tenant_id, sender_identity_id=created.sender_identity_id, forward_to=forward_to
            ),
            update_mask=FieldMask(paths=["forward_to"]),
        )

    moved = (await identities.UpdateSenderIdentity(update("inbox@acme-corp.test"))).sender_identity
    assert (moved.from_name, moved.forward_to) == ("Samuel", "inbox@acme-corp.test")
    cleared = (await identities.UpdateSenderIdentity(update(""))).sender_identity
    assert cleared.forward_to == ""

    assert await invalid(identities.UpdateSenderIdentity, update("not-an-address")) == ["sender_identity.forward_to"]
    listed = await identities.ListSenderIdentities(pb.ListSenderIdentitiesRequest(tenant_id=tenant_id))
    assert [i.forward_to for i in listed.sender_identities] == [""]


async def test_an_invalid_forward_to_at_create_names_the_field(identities, tenant_id):
    request = pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="sam@acme.test", forward_to="sam at acme")
    assert await invalid(identities.CreateSenderIdentity, request) == ["forward_to"]


async def test_another_tenants_identity_forward_to_is_not_found(identities, tenant_id):
    created = (
        await identities.CreateSenderIdentity(
            pb.CreateSenderIdentityRequest(tenant_id=tenant_id, from_email="s@a.test")
        )
    ).sender_identity
    request = pb.UpdateSenderIdentityRequest(
        sender_identity=pb.SenderIdentity(
            tenant_id=f"{tenant_id}-x", sender_identity_id=created.sender_identity_id, forward_to="x@elsewhere.test"
        ),
        update_mask=FieldMask(paths=["forward_to"]),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await identities.UpdateSenderIdentity(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    got = await identities.GetSenderIdentity(
        pb.GetSenderIdentityRequest(tenant_id=tenant_id, sender_identity_id=created.sender_identity_id)
    )
    assert got.sender_identity.forward_to == ""


async def test_reply_forwarding_is_set_read_and_cleared_per_tenant(api, tenant_id):
    async def get(tenant: str) -> pb.ReplyForwarding:
        return (await api.GetReplyForwarding(pb.GetReplyForwardingRequest(tenant_id=tenant))).reply_forwarding

    def set_(tenant: str, catch_all: str) -> pb.SetReplyForwardingRequest:
        return pb.SetReplyForwardingRequest(reply_forwarding=pb.ReplyForwarding(tenant_id=tenant, catch_all=catch_all))

    assert await get(tenant_id) == pb.ReplyForwarding(tenant_id=tenant_id, catch_all="")
    answer = await api.SetReplyForwarding(set_(tenant_id, " replies@acme-corp.test "))
    assert answer.reply_forwarding == pb.ReplyForwarding(tenant_id=tenant_id, catch_all="replies@acme-corp.test")
    assert (await get(tenant_id)).catch_all == "replies@acme-corp.test"
    # Another tenant sees nothing of it.
    assert (await get(f"{tenant_id}-x")).catch_all == ""

    await api.SetReplyForwarding(set_(tenant_id, ""))
    assert (await get(tenant_id)).catch_all == ""

    assert await invalid(api.SetReplyForwarding, set_(tenant_id, "replies-at-acme")) == ["reply_forwarding.catch_all"]
    assert await invalid(api.SetReplyForwarding, set_("", "replies@acme-corp.test")) == ["reply_forwarding.tenant_id"]
    assert await invalid(api.GetReplyForwarding, pb.GetReplyForwardingRequest(tenant_id="bad tenant!")) == ["tenant_id"]
    # A refused change leaves what was there.
    assert (await get(tenant_id)).catch_all == ""
