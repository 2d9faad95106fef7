"""What the reply-forwarding tests share: a sender identity (with or without forward_to), a
campaign email sent through the real send pipeline so the forward finds its message row and
identity as production does, a forward command, and reading back the forwards the fake SendGrid
received, the forward's row and the forwards counter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from dispatch_support import mark_verified, sender_identities
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import AcceptedMessage, FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures, repository
from dripiq_dispatcher.provider import MailSender
from dripiq_dispatcher.sending import Sends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2030, 1, 2, 9, 30, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
MAX_ATTEMPTS = 3


async def new_identity(engine: AsyncEngine, tenant_id: str, *, forward_to: str = "", verified: bool = True) -> str:
    identities = sender_identities(engine, ManualClock(T0))
    created = await identities.create(
        pb.CreateSenderIdentityRequest(
            tenant_id=tenant_id,
            from_email=f"sales-{uuid.uuid4().hex[:6]}@acme.test",
            from_name="Sam at Acme",
            forward_to=forward_to,
        )
    )
    if verified:
        await mark_verified(engine, tenant_id, created.sender_identity_id)
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
