"""Which campaigns may send: the dispatcher's own copy of each campaign's status.

The planner publishes CampaignStatusChanged from its outbox in the transaction that pauses,
resumes, cancels or completes a campaign. Kept here, it lets the admission transaction refuse
a command of a stopped campaign, whatever was in flight when it stopped: a deferred send, a
command queued on the stream, a step whose timer fired just before a reply. Only the highest
version of each campaign is kept, so facts delivered late or twice never bring back an older
status.

What "stopped" can promise: every admission that reads the campaign after the stop is
recorded here withholds the command. An admission that read it just before (its provider call
may be under way as the stop arrives) was first, and its email goes out; the planner, hearing
it was sent, schedules nothing after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import facts_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument
from dripiq_dispatcher import repository

log = structlog.get_logger(__name__)


@dataclass
class CampaignStates:
    engine: AsyncEngine
    clock: Clock

    async def handle(self, batch: Sequence[bytes]) -> int:
        """CampaignStatusChanged facts, in one transaction; how many changed our copy. A fact
        that names no valid tenant or campaign is passed over (it never will)."""
        newest: dict[tuple[str, str], facts_pb2.CampaignStatusChanged] = {}
        for data in batch:
            fact = decode(facts_pb2.CampaignStatusChanged, data)
            try:
                key = (validation.tenant_id(fact.tenant_id), validation.required(fact.campaign_id, "campaign_id"))
                validation.required(fact.status, "status")
            except InvalidArgument as exc:
                log.warning("campaign_state.unusable", error=str(exc), campaign_id=fact.campaign_id)
                continue
            if key not in newest or newest[key].version < fact.version:
                newest[key] = fact
        if not newest:
            return 0
        now = self.clock.now()
        rows = [
            {
                "tenant_id": tenant,
                "campaign_id": campaign,
                "status": fact.status,
                "version": fact.version,
                "reason": fact.reason,
                "updated_at": fact.occurred_at.ToDatetime(tzinfo=UTC) if fact.HasField("occurred_at") else now,
            }
            for (tenant, campaign), fact in sorted(newest.items())
        ]
        async with self.engine.begin() as conn:
            changed = await repository.campaign_states.record_campaign_states(conn, rows=rows)
        log.info("campaign_state.recorded", facts=len(batch), changed=changed)
        return changed
