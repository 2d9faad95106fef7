"""Inbound mail is not kept forever: unmatched mail after EVENTS_UNMATCHED_INBOUND_RETENTION_DAYS,
every mail, people's matched replies included, after EVENTS_INBOUND_RETENTION_DAYS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from events_helpers import MAIL_DOMAIN, multipart
from sqlalchemy import select

from dripiq.events.v1 import messages_pb2
from dripiq_common.tokens import reply_address
from dripiq_events.models import inbound_emails
from dripiq_events.replies import prune_inbound, prune_unmatched_inbound

# Long before anything the other tests store (T0 is 2030), so pruning here touches only these.
OLD = datetime(2001, 3, 1, tzinfo=UTC)
CUTOFF = datetime(2001, 6, 1, tzinfo=UTC)
NEWER = datetime(2001, 9, 1, tzinfo=UTC)


def reply(to: str, received_at: datetime) -> bytes:
    body, content_type = multipart(
        {
            "headers": f"From: ada@example.com\r\nTo: {to}\r\nSubject: Re: Hello\r\n".encode(),
            "from": b"ada@example.com",
            "to": to.encode(),
            "subject": b"Re: Hello",
            "text": f"Sounds good {uuid.uuid4()}".encode(),
        }
    )
    raw = messages_pb2.RawWebhook(
        kind=messages_pb2.RawWebhook.KIND_SENDGRID_INBOUND, body=body, content_type=content_type
    )
    raw.received_at.FromDatetime(received_at)
    return raw.SerializeToString()


async def kept(engine, marker: set[str]) -> set[tuple[str, bool]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(inbound_emails.c.to_email, inbound_emails.c.matched).where(inbound_emails.c.to_email.in_(marker))
            )
        ).all()
    return {(row.to_email, row.matched) for row in rows}


async def test_unmatched_then_all_inbound_mail_past_retention_is_deleted(engine, ingest, send, signer, tenant_id):
    sent = await send(tenant_id)
    matched_to = reply_address(signer, sent.message_id, MAIL_DOMAIN)
    stranger_to = f"sales-{uuid.uuid4().hex[:8]}@dripiq.test"
    newer_to = f"sales-{uuid.uuid4().hex[:8]}@dripiq.test"
    for to, at in ((matched_to, OLD), (stranger_to, OLD), (newer_to, NEWER)):
        assert (await ingest.handle_webhook(reply(to, at), last_attempt=True)).stored == 1
    everyone = {matched_to, stranger_to, newer_to}
    assert await kept(engine, everyone) == {(matched_to, True), (stranger_to, False), (newer_to, False)}

    # Mail no tenant can read goes first (its own, shorter retention)...
    for _ in range(10):
        if not await prune_unmatched_inbound(engine, before=CUTOFF, limit=1):
            break
    assert await kept(engine, everyone) == {(matched_to, True), (newer_to, False)}

    # ...and a person's reply too once it is past the retention of all inbound mail.
    for _ in range(10):
        if not await prune_inbound(engine, before=CUTOFF, limit=1):
            break
    assert await kept(engine, everyone) == {(newer_to, False)}
