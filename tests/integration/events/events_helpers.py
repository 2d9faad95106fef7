"""Builders shared by the events tests: sent messages, outcomes, raw webhooks, Inbound Parse posts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_devtools.fake_sendgrid import AcceptedMessage
from dripiq_events.models import message_events, outbox

SECRET = b"events-test-secret-0123456789"
MAIL_DOMAIN = "mail.dripiq.test"
CONTACT_EMAIL = "ada@example.com"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    """A message the dispatcher sent, as SendGrid and our outcome describe it."""

    tenant_id: str
    message_id: str
    x_message_id: str
    rfc_message_id: str
    accepted: AcceptedMessage


def accepted_message(
    tenant_id: str, message_id: str, x_message_id: str, *, custom_args: bool = True
) -> AcceptedMessage:
    args = {"tenant_id": tenant_id, "campaign_id": "camp-1", "step_index": "2", "message_id": message_id}
    payload = {
        "personalizations": [{"to": [{"email": CONTACT_EMAIL}]}],
        "from": {"email": "campaigns@dripiq.test"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}],
        "custom_args": args if custom_args else {},
    }
    return AcceptedMessage(x_message_id, payload, datetime.now(UTC))


def outcome(sent: Sent, kind: int = dispatcher_pb.OUTCOME_KIND_SENT) -> bytes:
    message = dispatcher_pb.MessageOutcome(
        tenant_id=sent.tenant_id,
        message_id=sent.message_id,
        campaign_id="camp-1",
        step_index=2,
        contact_id="contact-1",
        channel="email",
        kind=kind,
        provider="sendgrid",
        provider_message_id=sent.x_message_id,
        rfc_message_id=sent.rfc_message_id,
        to_email=CONTACT_EMAIL,
        subject="Hello",
    )
    message.occurred_at.FromDatetime(T0)
    return message.SerializeToString()


def raw_webhook(kind: int, *, body: bytes = b"", content_type: str = "", **fields: str) -> bytes:
    raw = messages_pb2.RawWebhook(kind=kind, body=body, content_type=content_type, fields=fields)
    raw.received_at.FromDatetime(T0)
    return raw.SerializeToString()


def multipart(fields: dict[str, bytes], boundary: str = "xYzZY") -> tuple[bytes, str]:
    """An Inbound Parse post: text fields of multipart/form-data, as SendGrid sends them."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def events_of(engine: AsyncEngine, **where: object) -> list:  # type: ignore[type-arg]
    """message_events rows matching column = value filters, oldest first."""
    query = select(message_events).order_by(message_events.c.id)
    for column, value in where.items():
        query = query.where(message_events.c[column] == value)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def outboxed(engine: AsyncEngine, tenant_id: str, event_type: str) -> list[messages_pb2.EngagementEvent]:
    """Engagement facts waiting in the outbox for one tenant and event type."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload)
                .where(outbox.c.subject == Subjects.engagement(tenant_id, event_type))
                .order_by(outbox.c.id)
            )
        ).all()
    return [fact for p in payloads for fact in messages_pb2.EngagementBatch.FromString(p).events]


async def forward_commands(engine: AsyncEngine, subject: str) -> list[dispatcher_pb.ForwardReplyCommand]:
    """Commands to forward a reply waiting in the outbox on one subject."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(select(outbox.c.payload).where(outbox.c.subject == subject).order_by(outbox.c.id))
        ).all()
    return [dispatcher_pb.ForwardReplyCommand.FromString(p) for p in payloads]


async def suppress_commands(engine: AsyncEngine, tenant_id: str) -> list[dispatcher_pb.SuppressByMessageCommand]:
    """Commands asking the dispatcher to suppress a message's address, waiting in the outbox."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload)
                .where(outbox.c.subject == Subjects.dispatcher_suppress(tenant_id))
                .order_by(outbox.c.id)
            )
        ).all()
    return [dispatcher_pb.SuppressByMessageCommand.FromString(p) for p in payloads]


async def outbox_count(engine: AsyncEngine, tenant_id: str) -> int:
    """Engagement facts waiting in the outbox for one tenant, whatever their batches."""
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(outbox.c.payload).where(outbox.c.subject.like(f"dripiq.events.engagement.{tenant_id}.%"))
            )
        ).all()
    return sum(len(messages_pb2.EngagementBatch.FromString(p).events) for p in payloads)
