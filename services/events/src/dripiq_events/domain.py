"""Engagement rules: what a provider event is, which message it belongs to, what gets published.

No I/O here: the ingest service feeds these functions rows it read and stores what they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import events_service_pb2 as api_pb
from dripiq.events.v1 import messages_pb2
from dripiq_common import validation
from dripiq_common.engagement import TASK_ENGAGEMENT, task_event_id
from dripiq_common.errors import PermanentMessageError
from dripiq_events import reply_text
from dripiq_events.classification import Classification

if TYPE_CHECKING:
    from dripiq_events.inbound import InboundMail

PROVIDER_SENDGRID = "sendgrid"
PROVIDER_INBOUND = "sendgrid-inbound"
PROVIDER_DRIPIQ = "dripiq"
REJECTED = "rejected"
REPLY = "reply"
AUTO_REPLY = "auto_reply"
UNSUBSCRIBE = "unsubscribe"


# Ids go into indexes (a btree row holds at most ~2.7 kB): ours are far shorter, so a longer
# custom arg is not ours, and a longer event id is hashed.
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class Outbound:
    """What we keep of one sent message (a row of outbound_messages)."""

    message_id: str
    tenant_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    to_email: str


@dataclass(slots=True)
class ReplyFacts:
    """What the engagement fact of a reply tells its readers besides the event itself."""

    inbound_id: int
    snippet: str
    reply_class: str = ""
    return_date: date | None = None


@dataclass(slots=True)
class NewEvent:
    """A message_events row to store; matched ones are published as engagement."""

    provider: str
    provider_event_id: str
    event_type: str
    occurred_at: datetime
    matched: bool
    tenant_id: str | None = None
    message_id: str | None = None
    campaign_id: str | None = None
    step_index: int | None = None
    contact_id: str | None = None
    email: str | None = None
    machine_open: bool = False
    url: str | None = None
    reason: str | None = None
    raw_event: Any = None
    # Carried to the engagement fact (the dispatcher settles an `unknown` send with it).
    provider_message_id: str | None = None
    # Replies only: carried to the engagement fact.
    reply: ReplyFacts | None = None

    @property
    def key(self) -> tuple[str, str, datetime]:
        """The natural key the table dedupes on."""
        return self.provider, self.provider_event_id, self.occurred_at


def reply_event(
    *,
    outbound: Outbound,
    dedupe_key: str,
    occurred_at: datetime,
    auto_reason: str | None,
    raw_event: Any,
    reply: ReplyFacts,
) -> NewEvent:
    return _of_message(
        outbound,
        provider=PROVIDER_INBOUND,
        provider_event_id=dedupe_key,
        event_type=AUTO_REPLY if auto_reason else REPLY,
        occurred_at=occurred_at,
        reason=auto_reason,
        raw_event=raw_event,
        reply=reply,
    )


def _of_message(outbound: Outbound, **fields: Any) -> NewEvent:
    """A matched event that we tie to one of our messages ourselves: its facts are our copy's."""
    return NewEvent(
        matched=True,
        tenant_id=outbound.tenant_id,
        message_id=outbound.message_id,
        campaign_id=outbound.campaign_id,
        step_index=outbound.step_index,
        contact_id=outbound.contact_id,
        email=outbound.to_email or None,
        **fields,
    )


def unsubscribe_event(*, tenant_id: str, message_id: str, outbound: Outbound | None, occurred_at: datetime) -> NewEvent:
    """One-click unsubscribes are ours: the signed token proves tenant and message even when
    the "sent" outcome has not reached us, so they are always matched."""
    known: dict[str, Any] = {}
    if outbound is not None:
        known = {
            "campaign_id": outbound.campaign_id,
            "step_index": outbound.step_index,
            "contact_id": outbound.contact_id,
            "email": outbound.to_email,
        }
    return NewEvent(
        provider=PROVIDER_DRIPIQ,
        provider_event_id=unsubscribe_event_id(message_id),
        event_type=UNSUBSCRIBE,
        occurred_at=occurred_at,
        matched=True,
        tenant_id=tenant_id,
        message_id=message_id,
        raw_event={"tenant_id": tenant_id, "message_id": message_id},
        **known,
    )


def unsubscribe_request(tenant_id: str, message_id: str) -> tuple[str, str]:
    """The tenant and message a signed unsubscribe names, or InvalidArgument for one that could
    never be recorded. The edge asks this before it answers, so it never says "unsubscribed" for
    a request the events service would dead-letter."""
    return validation.tenant_id(tenant_id), validation.required(message_id, "message_id", max_length=MAX_ID_LENGTH)


def needs_address(outbound: Outbound | None) -> bool:
    """Whether an unsubscribe must ask the dispatcher for the address: without our record of
    the message, its engagement fact names none, and nobody would suppress it."""
    return outbound is None or not outbound.to_email


def suppress_by_message(
    *, tenant_id: str, message_id: str, occurred_at: datetime
) -> dispatcher_pb.SuppressByMessageCommand:
    """The dispatcher keeps every message's address: it suppresses the one this message went to."""
    command = dispatcher_pb.SuppressByMessageCommand(tenant_id=tenant_id, message_id=message_id, reason=UNSUBSCRIBE)
    command.occurred_at.FromDatetime(occurred_at)
    return command


def task_event(outcome: dispatcher_pb.MessageOutcome, sent: SentMessage) -> NewEvent | None:
    """The event a completed task's report stands for (a reply or a decline), or None. Its
    engagement fact was published by the dispatcher with the same id, so it is stored and
    counted here, never published again."""
    event_type = TASK_ENGAGEMENT.get(outcome.task_outcome)
    if event_type is None:
        return None
    return _of_message(
        sent.outbound,
        provider=PROVIDER_DRIPIQ,
        provider_event_id=task_event_id(sent.outbound.message_id),
        event_type=event_type,
        occurred_at=sent.sent_at,
        reason=f"{outcome.channel} task: {outcome.task_outcome}",
        raw_event={"channel": outcome.channel, "task_outcome": outcome.task_outcome},
    )


@dataclass(frozen=True)
class ReplyReading:
    """What reading a reply found: a person's reply's class, an auto-reply's return date."""

    classification: Classification | None = None
    return_date: date | None = None

    @property
    def generations(self) -> list[dict[str, Any]]:
        return self.classification.generations if self.classification else []


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


def forward_command(
    outbound: Outbound | None, *, message_id: str, inbound_id: int, row: dict[str, Any], received_at: datetime
) -> dispatcher_pb.ForwardReplyCommand:
    """What the dispatcher needs to forward a person's reply to the salesperson behind it.
    Without our record of the message (`outbound` None) it names no tenant or campaign: the
    dispatcher finds them from `message_id`, which the signed reply address proved."""
    command = dispatcher_pb.ForwardReplyCommand(
        tenant_id=outbound.tenant_id if outbound else "",
        inbound_id=str(inbound_id),
        message_id=message_id,
        campaign_id=outbound.campaign_id if outbound else "",
        from_email=row["from_email"],
        subject=row["subject"],
        text=row["text_body"] or reply_text.plain_text(row["html_body"]),
        html=row["html_body"],
        reply_class=row["classification"] or "",
    )
    command.received_at.FromDatetime(received_at)
    return command


def inbound_to_proto(row: Any) -> api_pb.InboundMessage:
    message = api_pb.InboundMessage(
        inbound_id=str(row.id),
        tenant_id=row.tenant_id or "",
        from_email=row.from_email,
        subject=row.subject,
        text=row.text_body,
        html=row.html_body,
        campaign_id=row.campaign_id or "",
        step_index=row.step_index or 0,
        message_id=row.message_id or "",
        kind=AUTO_REPLY if row.is_auto_reply else REPLY,
        classification=row.classification or "",
        classified_by=row.classified_by or "",
        return_date=row.return_date.isoformat() if row.return_date else "",
        snippet=row.snippet,
    )
    message.received_at.FromDatetime(row.received_at)
    return message


def unsubscribe_event_id(message_id: str) -> str:
    return f"unsub:{message_id}"


def engagement(event: NewEvent, *, event_id: int) -> messages_pb2.EngagementEvent:
    """The engagement fact for a newly stored, matched event."""
    if not event.matched or event.tenant_id is None:
        raise ValueError("only matched events are published")
    occurred = event.occurred_at
    # Fields left at their defaults are not passed, and the timestamp goes in as a dict: both
    # cost less than setting them (thousands of facts a second).
    fact = messages_pb2.EngagementEvent(
        tenant_id=event.tenant_id,
        event_id=str(event_id),
        message_id=event.message_id or "",
        campaign_id=event.campaign_id or "",
        step_index=event.step_index or 0,
        contact_id=event.contact_id or "",
        event_type=event.event_type,
        email=event.email or "",
        provider_message_id=event.provider_message_id or "",
        occurred_at={"seconds": math.floor(occurred.timestamp()), "nanos": occurred.microsecond * 1000},
    )
    if event.machine_open:
        fact.machine_open = True
    if event.url:
        fact.url = event.url
    if event.reason:
        fact.reason = event.reason
    if event.reply is not None:
        fact.inbound_id = str(event.reply.inbound_id)
        fact.snippet = event.reply.snippet
        fact.reply_class = event.reply.reply_class
        if event.reply.return_date is not None:
            fact.return_date = event.reply.return_date.isoformat()
    return fact


@dataclass(frozen=True)
class SentMessage:
    """A SENT outcome, as the outbound_messages row that keeps it."""

    outbound: Outbound
    subject: str
    provider_message_id: str | None
    rfc_message_id: str | None
    sent_at: datetime


def sent_message(outcome: dispatcher_pb.MessageOutcome, *, now: datetime) -> SentMessage:
    for name in ("tenant_id", "message_id"):
        if not getattr(outcome, name):
            raise PermanentMessageError(f"MessageOutcome without {name}")
    if not validation.TENANT.match(outcome.tenant_id):
        raise PermanentMessageError(f"MessageOutcome with an invalid tenant_id {outcome.tenant_id!r}")
    return SentMessage(
        outbound=Outbound(
            message_id=outcome.message_id,
            tenant_id=outcome.tenant_id,
            campaign_id=outcome.campaign_id,
            step_index=outcome.step_index,
            contact_id=outcome.contact_id,
            to_email=outcome.to_email,
        ),
        subject=outcome.subject,
        provider_message_id=outcome.provider_message_id or None,
        rfc_message_id=outcome.rfc_message_id or None,
        sent_at=outcome.occurred_at.ToDatetime(tzinfo=UTC) if outcome.HasField("occurred_at") else now,
    )


def to_proto(row: Any) -> api_pb.MessageEvent:
    event = api_pb.MessageEvent(
        event_id=str(row.id),
        tenant_id=row.tenant_id,
        message_id=row.message_id or "",
        campaign_id=row.campaign_id or "",
        step_index=row.step_index or 0,
        event_type=row.event_type,
        provider=row.provider,
        provider_event_id=row.provider_event_id,
        machine_open=row.machine_open,
        url=row.url or "",
    )
    event.occurred_at.FromDatetime(row.occurred_at)
    return event


# Rollups (events.step_stats): metrics counted once per message, with the bit that records in
# outbound_messages.seen that the message already counted; and metrics counted per event.
UNIQUE_METRICS = {
    "delivered": 1 << 0,
    "unique_human_opens": 1 << 1,
    "machine_opens": 1 << 2,
    "unique_clicks": 1 << 3,
    "replies": 1 << 4,
    "auto_replies": 1 << 5,
    "bounces": 1 << 6,
    "unsubscribes": 1 << 7,
    "spam_reports": 1 << 8,
}
SENT_METRIC = "sent"
_ROLLUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "delivered": (("delivered",), ()),
    "click": (("unique_clicks",), ("click_events",)),
    REPLY: (("replies",), ()),
    AUTO_REPLY: (("auto_replies",), ()),
    "bounce": (("bounces",), ()),
    UNSUBSCRIBE: (("unsubscribes",), ()),
    "group_unsubscribe": (("unsubscribes",), ()),
    "spamreport": (("spam_reports",), ()),
}


def rollup_metrics(event_type: str, machine_open: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(metrics an event counts once for its message, metrics it counts as an event)."""
    if event_type == "open":
        return (("machine_opens",), ()) if machine_open else (("unique_human_opens",), ("human_open_events",))
    return _ROLLUPS.get(event_type, ((), ()))


def counts_to_proto(values: dict[str, int]) -> api_pb.EngagementCounts:
    """Rollup values by metric name as the API's counts (absent metrics are zero)."""
    return api_pb.EngagementCounts(
        sent=values.get(SENT_METRIC, 0),
        delivered=values.get("delivered", 0),
        unique_human_opens=values.get("unique_human_opens", 0),
        machine_opens=values.get("machine_opens", 0),
        human_open_events=values.get("human_open_events", 0),
        unique_clicks=values.get("unique_clicks", 0),
        click_events=values.get("click_events", 0),
        replies=values.get("replies", 0),
        auto_replies=values.get("auto_replies", 0),
        bounces=values.get("bounces", 0),
        unsubscribes=values.get("unsubscribes", 0),
        spam_reports=values.get("spam_reports", 0),
    )
