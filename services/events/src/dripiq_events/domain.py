"""The events service's domain: the event rows it stores, its copy of a sent message, and the
events it makes itself (replies, one-click unsubscribes, completed tasks).

No I/O and no protobuf here: the ingest side feeds these functions what it read and stores what
they return; convert.py turns them into messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dripiq_common import validation
from dripiq_common.engagement import TASK_ENGAGEMENT, task_event_id

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
class Cohort:
    """Where a sent message and its engagement are counted in the tenant's analytics: the UTC
    day it was sent and what it was sent as (its step index is the message's own)."""

    day: date
    product_id: str = ""
    sender_identity_id: str = ""
    strategist: str = ""
    variant: str = ""
    channel: str = ""


@dataclass(frozen=True)
class Outbound:
    """What we keep of one sent message (a row of outbound_messages)."""

    message_id: str
    tenant_id: str
    campaign_id: str
    step_index: int
    contact_id: str
    to_email: str
    # None for a message kept before the tenant's analytics began (or one whose outcome
    # carried values too long to count under): it counts in its campaign's stats only.
    cohort: Cohort | None = None


@dataclass(frozen=True)
class SentMessage:
    """A SENT outcome, as the outbound_messages row that keeps it."""

    outbound: Outbound
    subject: str
    provider_message_id: str | None
    rfc_message_id: str | None
    sent_at: datetime


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
    # Where its per-event counts go in the tenant's analytics, when its message is known.
    cohort: Cohort | None = None

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
        cohort=outbound.cohort,
        **fields,
    )


def unsubscribe_event_id(message_id: str) -> str:
    return f"unsub:{message_id}"


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
            "cohort": outbound.cohort,
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


def task_event(sent: SentMessage, *, channel: str, task_outcome: str) -> NewEvent | None:
    """The event a completed task's report stands for (a reply or a decline), or None. Its
    engagement fact was published by the dispatcher with the same id, so it is stored and
    counted here, never published again."""
    event_type = TASK_ENGAGEMENT.get(task_outcome)
    if event_type is None:
        return None
    return _of_message(
        sent.outbound,
        provider=PROVIDER_DRIPIQ,
        provider_event_id=task_event_id(sent.outbound.message_id),
        event_type=event_type,
        occurred_at=sent.sent_at,
        reason=f"{channel} task: {task_outcome}",
        raw_event={"channel": channel, "task_outcome": task_outcome},
    )
