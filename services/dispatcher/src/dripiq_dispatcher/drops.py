"""SendGrid's `dropped`: a message it accepted and then will not deliver. The message fails
with SendGrid's reason and the planner hears it as a failed send, permanent when the reason
lasts (the address bounced, unsubscribed, reported spam or is invalid: the address is
suppressed too, by suppressions.suppression_reason); any other reason (spam content, a bad
SMTPAPI header, the account over its quota) is ours to fix, so the campaign waits for a person."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_dispatcher import outcomes, repository
from dripiq_dispatcher.domain import Status
from dripiq_dispatcher.models import messages
from dripiq_dispatcher.suppressions import LASTING_DROPS

log = structlog.get_logger(__name__)


def drop_error(reason: str) -> str:
    return f"dropped by SendGrid: {reason or 'no reason given'}"


@dataclass
class Drops:
    engine: AsyncEngine
    clock: Clock
    on_outbox: Callable[[], None] = field(default=lambda: None)

    async def handle(self, events: Sequence[events_pb2.EngagementEvent]) -> int:
        """Fail each sent message SendGrid dropped; how many. A message already failed (a
        redelivered event) or never ours is passed over."""
        dropped = {
            e.message_id: e
            for e in events
            if e.event_type == "dropped" and e.message_id and validation.is_tenant(e.tenant_id)
        }
        if not dropped:
            return 0
        now = self.clock.now()
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.message_id.in_(sorted(dropped)), messages.c.status == Status.SENT.value)
                    .order_by(messages.c.message_id)
                    .with_for_update()
                )
            ).all()
            failed = [row for row in rows if row.tenant_id == dropped[row.message_id].tenant_id]
            for row in failed:
                event = dropped[row.message_id]
                error = drop_error(event.reason)
                await repository.messages.set_status(
                    conn,
                    message_id=row.message_id,
                    expected=[Status.SENT],
                    status=Status.FAILED,
                    now=now,
                    last_error=error,
                )
                at = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else now
                fact = outcomes.outcome_for_row(row, messages_pb2.OUTCOME_KIND_FAILED, occurred_at=at, reason=error)
                fact.permanent = event.reason in LASTING_DROPS
                await outcomes.enqueue_outcome(conn, fact)
        for row in failed:
            log.warning(
                "send.dropped",
                tenant_id=row.tenant_id,
                message_id=row.message_id,
                reason=dropped[row.message_id].reason,
            )
        if failed:
            self.on_outbox()
        return len(failed)
