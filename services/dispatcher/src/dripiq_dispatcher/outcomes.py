"""A message's outcome fact, written to the dispatcher's outbox in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_dispatcher import metrics
from dripiq_dispatcher.campaign_mail import clicks_untracked_reason, opens_untracked_reason
from dripiq_dispatcher.domain import EMAIL, PROVIDER, NewMessage
from dripiq_dispatcher.models import outbox


async def enqueue_outcome(conn: AsyncConnection, fact: messages_pb2.MessageOutcome) -> None:
    message = OutboxMessage(Subjects.message_outcome(fact.tenant_id), fact)
    await enqueue(conn, outbox, [message])
    # Counted as written: these rarer paths (tasks, late settlements) seldom roll back.
    metrics.count_outcomes([message])


# SendGrid's delivery events: it posts `processed` for every message it accepts, then one of the
# others. Their times say how far SendGrid's reports have reached.
DELIVERY_EVENTS = frozenset({"processed", "delivered", "deferred", "bounce", "dropped"})


def outcome_for_row(
    row: Any,
    kind: messages_pb2.OutcomeKind,
    *,
    occurred_at: datetime,
    reason: str = "",
    provider_message_id: str = "",
    task_outcome: str = "",
) -> messages_pb2.MessageOutcome:
    """The outcome of a stored message (settled later than its send command)."""
    fact = outcome(
        row,
        kind,
        occurred_at=occurred_at,
        reason=reason,
        provider_message_id=provider_message_id,
        rfc_message_id=row.rfc_message_id or "",
    )
    fact.task_outcome = task_outcome
    return fact


def outcome(
    message: NewMessage | Any,
    kind: messages_pb2.OutcomeKind,
    *,
    occurred_at: datetime,
    reason: str = "",
    provider_message_id: str = "",
    rfc_message_id: str = "",
    permanent: bool = False,
) -> messages_pb2.MessageOutcome:
    fact = messages_pb2.MessageOutcome(
        permanent=permanent,
        tenant_id=message.tenant_id,
        message_id=message.message_id,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
        contact_id=message.contact_id,
        channel=message.channel,
        kind=kind,
        provider=PROVIDER if kind == messages_pb2.OUTCOME_KIND_SENT and message.channel == EMAIL else "",
        provider_message_id=provider_message_id,
        rfc_message_id=rfc_message_id,
        reason=reason,
        to_email=message.to_email,
        subject=message.subject,
        product_id=message.product_id,
        sender_identity_id=message.sender_identity_id,
        strategist=message.strategist,
        variant=message.variant,
    )
    if kind == messages_pb2.OUTCOME_KIND_SENT:
        fact.opens_untracked_reason = opens_untracked_reason(message)
        fact.clicks_untracked_reason = clicks_untracked_reason(message)
    fact.occurred_at.FromDatetime(occurred_at)
    return fact
