"""What the send-path tests share: the dispatcher built on the fake SendGrid, a verified sender
identity, a send command, and reading back what SendGrid received, the message row and the
outcomes waiting in the outbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import ManualClock
from dripiq_common.tokens import TokenSigner
from dripiq_devtools.fake_sendgrid import AcceptedMessage, FakeSendGrid
from dripiq_dispatcher import campaign_mail, failures
from dripiq_dispatcher.identities import SenderIdentities
from dripiq_dispatcher.models import messages, outbox
from dripiq_dispatcher.provider import AsyncSendGridSender, MailSender
from dripiq_dispatcher.rate_limits import RateLimits
from dripiq_dispatcher.sending import Sends
from dripiq_dispatcher.unconfirmed import UnconfirmedSends

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SIGNER = TokenSigner(b"integration-test-token-secret")
MAIL = campaign_mail.MailSettings("reply.test", "mid.test", "https://u.test/u/")
# Compressed: a real deployment retries for hours (DISPATCHER_RETRY_HORIZON_SECONDS).
RETRY = failures.RetryPolicy(horizon=timedelta(minutes=10), base=timedelta(seconds=30), cap=timedelta(minutes=2))


def new_sender(host: str, *, concurrency: int, timeout_seconds: float) -> MailSender:
    return AsyncSendGridSender(api_key="SG.test", host=host, concurrency=concurrency, timeout_seconds=timeout_seconds)


def new_dispatcher(engine: AsyncEngine, sender: Any, kicks: list[int] | None = None) -> Sends:
    def kick() -> None:
        if kicks is not None:
            kicks.append(1)

    return Sends(engine, ManualClock(T0), sender, SIGNER, MAIL, RETRY, on_outbox=kick)


def rate_limits_of(dispatcher: Sends) -> RateLimits:
    """The budgets API on the send path's database and clock."""
    return RateLimits(dispatcher.engine, dispatcher.clock)


def unconfirmed_of(dispatcher: Sends) -> UnconfirmedSends:
    """The settlement of unknown sends beside the send path, waking the same outbox relay."""
    return UnconfirmedSends(dispatcher.engine, dispatcher.clock, on_outbox=dispatcher.on_outbox)


async def identity(engine: AsyncEngine, tenant_id: str, *, verified: bool = True) -> str:
    identities = SenderIdentities(engine, ManualClock(T0))
    created = await identities.create(
        pb.CreateSenderIdentityRequest(
            tenant_id=tenant_id,
            from_email=f"sales-{uuid.uuid4().hex[:6]}@acme.test",
            from_name="Acme",
        )
    )
    if verified:
        await identities.verify(tenant_id, created.sender_identity_id)
    return created.sender_identity_id


def command(tenant_id: str, identity_id: str, **overrides: Any) -> messages_pb2.SendMessageCommand:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "message_id": str(uuid.uuid4()),
        "campaign_id": "camp-1",
        "step_index": 1,
        "contact_id": "contact-1",
        "channel": "email",
        "to_email": "ada@example.com",
        "to_name": "Ada",
        "sender_identity_id": identity_id,
        "subject": "Hello Ada",
        "body_text": "Hi Ada",
        "body_html": "<p>Hi Ada</p>",
        "categories": ["campaign"],
    }
    fields.update(overrides)
    return messages_pb2.SendMessageCommand(**fields)


def received(fake: FakeSendGrid, message_id: str) -> list[AcceptedMessage]:
    return [m for m in fake.messages if m.custom_args.get("message_id") == message_id]


async def stored(engine: AsyncEngine, message_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(messages).where(messages.c.message_id == message_id))).one()


async def outcomes(engine: AsyncEngine, tenant_id: str) -> list[messages_pb2.MessageOutcome]:
    async with engine.connect() as conn:
        payloads = (
            (
                await conn.execute(
                    select(outbox.c.payload)
                    .where(outbox.c.subject == Subjects.message_outcome(tenant_id))
                    .order_by(outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    return [messages_pb2.MessageOutcome.FromString(p) for p in payloads]
