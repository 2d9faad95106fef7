"""Replies (SendGrid Inbound Parse): each matched to the message it answers, read, stored once,
published, and, from a person, forwarded to one; unmatched ones pruned after a while.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common import outbox
from dripiq_common.bus.contract import Subjects
from dripiq_common.outbox import OutboxMessage
from dripiq_common.tokens import TokenSigner
from dripiq_events import autoreply_dates, convert, correlation, domain, inbound, reply_text, repository
from dripiq_events.classification import Classification, ReplyClassifier, RuleClassifier
from dripiq_events.domain import Outbound
from dripiq_events.inbound import InboundMail
from dripiq_events.models import outbox as outbox_table
from dripiq_events.storing import IngestResult, store_events

log = structlog.get_logger(__name__)


class AwaitingOutcome(Exception):
    """A reply names one of our messages whose SENT outcome has not reached us yet."""


@dataclass(frozen=True)
class ReplyReading:
    """What reading a reply found: a person's reply's class, an auto-reply's return date."""

    classification: Classification | None = None
    return_date: date | None = None

    @property
    def generations(self) -> list[dict[str, Any]]:
        return self.classification.generations if self.classification else []


@dataclass
class Replies:
    engine: AsyncEngine
    signer: TokenSigner
    classifier: ReplyClassifier = field(default_factory=RuleClassifier)

    async def handle(
        self, body: bytes, content_type: str, received_at: datetime, *, last_attempt: bool
    ) -> IngestResult:
        """One reply: matched to the message it answers, read (classified, or its return date
        found), stored once, published, and, from a person, forwarded to one.

        The match is read in a first short transaction and the reply is classified outside any
        (an AI call takes seconds); the second transaction stores it, its engagement fact and the
        forward command together. A redelivery finds the stored reply and does nothing."""
        mail = inbound.parse_inbound(body, content_type)
        auto_reason = inbound.auto_reply_reason(mail)
        dedupe_key = "sha256:" + hashlib.sha256(body).hexdigest()
        token_message_id = correlation.reply_token_message_id(self.signer, mail.recipient_addresses)
        async with self.engine.connect() as conn:
            if await repository.inbound_stored(conn, dedupe_key=dedupe_key):
                return IngestResult(received=1)
            outbound = await correlation.replied_message(conn, token_message_id, mail.referenced_message_ids)
        if outbound is None and token_message_id and not last_attempt:
            # Our signed reply address proves the message was sent; its SENT outcome can
            # reach us after a quick reply does.
            raise AwaitingOutcome(f"reply to message {token_message_id} before its sent outcome")
        reading = await self._read(mail, outbound, auto_reason, received_at)
        row = inbound_row(
            mail,
            outbound=outbound,
            message_id=outbound.message_id if outbound else token_message_id,
            auto_reason=auto_reason,
            reading=reading,
            received_at=received_at,
            dedupe_key=dedupe_key,
        )
        async with self.engine.begin() as conn:
            inbound_id = await repository.insert_inbound(conn, values=row)
            if inbound_id is None:
                return IngestResult(received=1)
            if outbound is None:
                # Only a signed reply address names a message; a person's reply to it still
                # reaches someone: the dispatcher knows whose message it is.
                forwarded = token_message_id is not None and auto_reason is None
                if forwarded and token_message_id is not None:
                    forward = convert.forward_reply_command(
                        None, message_id=token_message_id, inbound_id=inbound_id, row=row, received_at=received_at
                    )
                    await outbox.enqueue(
                        conn, outbox_table, [OutboxMessage(Subjects.DISPATCHER_FORWARD_BY_MESSAGE, forward)]
                    )
                log.info(
                    "events.inbound_unmatched",
                    inbound_id=inbound_id,
                    token_valid=token_message_id is not None,
                    forwarded=forwarded,
                )
                return IngestResult(received=1, stored=1, unmatched=1)
            await repository.insert_generations(
                conn,
                rows=[{**g, "tenant_id": outbound.tenant_id, "inbound_id": inbound_id} for g in reading.generations],
            )
            event = domain.reply_event(
                outbound=outbound,
                dedupe_key=dedupe_key,
                occurred_at=received_at,
                auto_reason=auto_reason,
                raw_event={"inbound_email_id": inbound_id, "from": mail.from_email, "subject": mail.subject},
                reply=domain.ReplyFacts(
                    inbound_id=inbound_id,
                    snippet=row["snippet"],
                    reply_class=row["classification"] or "",
                    return_date=row["return_date"],
                ),
            )
            stored = await store_events(conn, [event], received_at)
            if auto_reason is None:
                forward = convert.forward_reply_command(
                    outbound, message_id=outbound.message_id, inbound_id=inbound_id, row=row, received_at=received_at
                )
                await outbox.enqueue(
                    conn, outbox_table, [OutboxMessage(Subjects.dispatcher_forward(outbound.tenant_id), forward)]
                )
        log.info(
            "events.reply_stored",
            tenant_id=outbound.tenant_id,
            message_id=outbound.message_id,
            event_type=event.event_type,
            reply_class=row["classification"],
            return_date=str(row["return_date"] or ""),
        )
        return IngestResult(received=1, stored=1, published=stored.published)

    async def _read(
        self, mail: InboundMail, outbound: Outbound | None, auto_reason: str | None, received_at: datetime
    ) -> ReplyReading:
        """What the reply says: an auto-reply's return date, a person's reply's class."""
        if auto_reason is not None:
            sent_at = mail.sent_at(received_at=received_at)
            return ReplyReading(return_date=autoreply_dates.return_date(mail.text, received_at=sent_at))
        if outbound is None:
            return ReplyReading()
        text = mail.text or reply_text.plain_text(mail.html)
        classified = await self.classifier.classify(tenant_id=outbound.tenant_id, subject=mail.subject, text=text)
        return ReplyReading(classification=classified)


def inbound_row(
    mail: InboundMail,
    *,
    outbound: Outbound | None,
    message_id: str | None,
    auto_reason: str | None,
    reading: ReplyReading,
    received_at: datetime,
    dedupe_key: str,
) -> dict[str, Any]:
    """The inbound_emails row of one received mail, matched or not."""
    text = mail.text or reply_text.plain_text(mail.html)
    classification = reading.classification
    return {
        "tenant_id": outbound.tenant_id if outbound else None,
        "message_id": message_id,
        "campaign_id": outbound.campaign_id if outbound else None,
        "step_index": outbound.step_index if outbound else None,
        "matched": outbound is not None,
        "is_auto_reply": auto_reason is not None,
        "from_email": mail.from_email,
        "to_email": ", ".join(mail.recipient_addresses),
        "subject": mail.subject,
        "text_body": mail.text,
        "html_body": reply_text.sanitized_html(mail.html) if mail.html else "",
        "snippet": reply_text.snippet(text),
        "classification": classification.reply_class.value if classification else None,
        "classified_by": classification.classified_by if classification else None,
        "return_date": reading.return_date,
        "headers": [list(pair) for pair in mail.headers],
        "received_at": received_at,
        "dedupe_key": dedupe_key,
    }


async def prune_unmatched_inbound(engine: AsyncEngine, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest unmatched inbound mails received before `before`:
    mail nobody could tie to a tenant is kept only for operators to look at, and not forever."""
    async with engine.begin() as conn:
        return await repository.delete_unmatched_inbound(conn, received_before=before, limit=limit)


async def prune_inbound(engine: AsyncEngine, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest inbound mails, matched or not, received before
    `before`: a reply is a person's words, kept for as long as the tenant needs it and no longer."""
    async with engine.begin() as conn:
        return await repository.delete_inbound(conn, received_before=before, limit=limit)
