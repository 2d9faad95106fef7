"""The planner's consumers: fired timers, send outcomes and engagement facts, a batch at a time.

Each batch is one transaction: it locks the campaigns it touches (`state.load`), reads which
decisions they already have, lets the rules act on them in memory in arrival order
(`timers`, `outcomes`, `engagements`), and writes them back with what they cause in the
outbox (`state.flush`). The rules re-check state before acting, so a stale timer or a
redelivered fact changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common import engagement
from dripiq_common.bus.contract import decode
from dripiq_common.clock import Clock
from dripiq_common.errors import PermanentMessageError
from dripiq_planner import collisions, engagements, outcomes, repository, state, timers
from dripiq_planner.state import CampaignKey, CampaignState, DecisionKey, UnitOfWork
from dripiq_planner.tenants import TenantDefaults
from dripiq_planner.winners import VariantWinners

# What a batch does to the campaigns it locked: (campaigns, unit of work, decisions taken).
Apply = Callable[[dict[CampaignKey, CampaignState], UnitOfWork, set[DecisionKey]], None]


@dataclass
class Reactor:
    engine: AsyncEngine
    clock: Clock
    count_machine_opens: bool = False
    # An out-of-office reply never pauses a campaign longer than this.
    max_auto_reply_pause_days: int = 30
    on_commit: Callable[[], None] = field(default=lambda: None)
    # Picks A/B winners for tenants that ask for it; None: steps are always split by the hash.
    winners: VariantWinners | None = None

    async def on_timer(self, data: bytes) -> None:
        await self.on_timers([data])

    async def on_timers(self, batch: Sequence[bytes]) -> None:
        fired = [decode(timers_pb2.PlannerTimer, data) for data in batch]
        for timer in fired:
            if timer.WhichOneof("kind") is None:
                raise PermanentMessageError("PlannerTimer without a kind")
        # What every send carries of its tenant's settings (postal address, tracking), read once a batch.
        tenants = await self._tenants({t.tenant_id for t in fired if t.HasField("step_due")})
        # Asked before the campaigns are locked: the events service may take its time.
        won = await self.winners.for_due(fired, tenants) if self.winners is not None else {}
        await self._run(
            [(t.tenant_id, t.campaign_id) for t in fired],
            partial(
                timers.apply, timers=fired, tenants=tenants, winners=won, max_pause_days=self.max_auto_reply_pause_days
            ),
            timers.decision_keys(fired),
        )

    async def on_outcome(self, data: bytes) -> None:
        await self.on_outcomes([data])

    async def on_outcomes(self, batch: Sequence[bytes]) -> None:
        reported = [decode(dispatcher_pb.MessageOutcome, data) for data in batch]
        await self._run(
            [(o.tenant_id, o.campaign_id) for o in reported],
            lambda campaigns, work, _: outcomes.apply(campaigns, work, outcomes=reported),
        )

    async def on_engagement(self, data: bytes) -> None:
        await self.on_engagements([data])

    async def on_engagements(self, batch: Sequence[bytes]) -> None:
        facts = engagements.facts_of(engagement.read_all(batch), count_machine_opens=self.count_machine_opens)
        tenants = await self._tenants({f.event.tenant_id for f in facts if f.trigger == "auto_reply"})
        await self._run(
            [(f.event.tenant_id, f.event.campaign_id) for f in facts],
            partial(engagements.apply, facts=facts, tenants=tenants, max_pause_days=self.max_auto_reply_pause_days),
            engagements.decision_keys(facts),
            replied=[(f.event.tenant_id, f.event.campaign_id) for f in facts if f.trigger == "reply"],
        )

    async def _run(
        self,
        keys: list[CampaignKey],
        apply: Apply,
        decision_keys: Sequence[DecisionKey] = (),
        *,
        replied: Sequence[CampaignKey] = (),
    ) -> None:
        """Lock and load the campaigns, let `apply` change them, write it all back. The
        campaigns a reply in `replied` may stop (collisions) are locked with them, in one
        statement in id order, so two batches never wait on each other in a circle."""
        if not keys:
            return
        async with self.engine.begin() as conn:
            in_scope = await collisions.scope_of_replies(conn, replied)
            campaigns = await state.load(conn, sorted({*keys, *in_scope}))
            already = await state.decided(conn, list(decision_keys))
            work = UnitOfWork(now=self.clock.now())
            apply(campaigns, work, already)
            others = await collisions.stop_others(conn, work, campaigns)
            await state.flush(conn, [*campaigns.values(), *others], work)
        if work.outbox:
            self.on_commit()

    async def _tenants(self, tenant_ids: set[str]) -> dict[str, TenantDefaults]:
        """These tenants' settings, read once for a batch that needs them."""
        if not tenant_ids:
            return {}
        async with self.engine.connect() as conn:
            return await repository.tenant_defaults(conn, tenant_ids=tenant_ids)
