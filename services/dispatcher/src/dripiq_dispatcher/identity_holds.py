"""Messages held while their sender identity was not verified, released once it is verified
again: each becomes a RELEASED outcome, on which the planner retries the step of a campaign
still waiting for it (and leaves any other campaign alone).

Driven by state, not by the verification itself: whatever made the identity verified again
(VerifySenderIdentity, the periodic re-check), the next round finds its holds. A round takes a
bounded batch, writes the outcomes to the outbox and deletes the holds in one transaction, so a
process that dies mid-way leaves the rest for the next round and releases nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.clock import Clock
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_dispatcher import metrics, outcomes, repository
from dripiq_dispatcher.domain import Status
from dripiq_dispatcher.models import outbox

log = structlog.get_logger(__name__)

# Holds released per transaction: each one outcome in the outbox.
RELEASE_BATCH = 500


def released_reason(identity_id: str) -> str:
    return f"sender identity {identity_id} verified again"


@dataclass
class HeldSends:
    engine: AsyncEngine
    clock: Clock
    on_outbox: Callable[[], None] = field(default=lambda: None)
    batch: int = RELEASE_BATCH

    async def release(self) -> int:
        """One round: up to `batch` holds of identities verified again; how many were taken."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            rows = await repository.identities.take_released(conn, limit=self.batch)
            facts = [
                outcomes.outcome_for_row(
                    row,
                    messages_pb2.OUTCOME_KIND_RELEASED,
                    occurred_at=now,
                    reason=released_reason(row.sender_identity_id),
                )
                # A message that is no longer failed (sent by a resend of the same id) has
                # nothing to release.
                for row in rows
                if row.status == Status.FAILED.value
            ]
            released = [OutboxMessage(Subjects.message_outcome(f.tenant_id), f) for f in facts]
            await enqueue(conn, outbox, released)
        metrics.count_outcomes(released)
        if facts:
            self.on_outbox()
            log.info("identity.holds_released", released=len(facts), taken=len(rows))
        return len(rows)
