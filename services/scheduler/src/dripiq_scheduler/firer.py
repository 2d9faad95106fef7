"""Fires due timers onto JetStream.

Each round locks a batch of due rows (SKIP LOCKED, so replicas share the work), publishes
them without waiting for each ack, waits for all acks, then marks the acked ones fired in the
same transaction. A cancel that commits first wins: it changed the row before we locked it.
A crash after publishing but before commit re-publishes the same `Nats-Msg-Id`, which
JetStream drops inside its duplicate window. A publish that gets no PubAck (NATS down, slow)
leaves its row active for a later round, never fired.

Rows due for longer than the overdue limit go through the overdue policy first (see
domain.OverduePolicy): fired anyway, dropped (canceled with a reason) or delayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from nats.js import JetStreamContext
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.bus.client import Outgoing, publish_many
from dripiq_common.clock import Clock
from dripiq_common.loops import Poller
from dripiq_scheduler import domain, metrics, repository

log = structlog.get_logger(__name__)


@dataclass
class Firer:
    engine: AsyncEngine
    js: JetStreamContext
    clock: Clock
    batch_size: int = 1000
    poll_seconds: float = 0.2
    publish_timeout: float = 10.0
    overdue: domain.Overdue = field(default_factory=domain.Overdue)

    def __post_init__(self) -> None:
        self._poller = Poller(self.fire_once, full=self.batch_size, poll_seconds=self.poll_seconds, name="firer")

    def wake(self) -> None:
        self._poller.wake()

    def stop(self) -> None:
        self._poller.stop()

    async def run(self) -> None:
        await self._poller.run()

    async def fire_once(self) -> int:
        """One round; returns how many due timers it settled (fired, dropped or delayed)."""
        now = self.clock.now()
        async with self.engine.begin() as conn:
            due = await repository.lock_due(conn, now=now, limit=self.batch_size)
            if not due:
                return 0
            plan = domain.sort_due(due, now=now, overdue=self.overdue)
            await repository.cancel_overdue(
                conn, ids=[row.id for row in plan.drop], reason=self.overdue.drop_reason(), now=now
            )
            await repository.reschedule_overdue(conn, moves=[(row.id, at) for row, at in plan.delay], now=now)
            try:
                acked = await self._publish(plan.fire)
            except Exception:
                # Nothing of this round commits; every row stays as it was for the next one.
                metrics.PUBLISH_FAILURES.inc(len(plan.fire))
                raise
            published_at = self.clock.now()
            fired = [row for row, ok in zip(plan.fire, acked, strict=True) if ok]
            await repository.mark_fired(conn, ids=[row.id for row in fired], now=published_at)
        self._record(plan, fired, published_at)
        return len(fired) + len(plan.drop) + len(plan.delay)

    async def _publish(self, rows: Sequence[Row[Any]]) -> list[bool]:
        if not rows:
            return []
        return await publish_many(
            self.js,
            [
                Outgoing(
                    row.target_subject,
                    row.payload,
                    domain.dedupe_id(row.tenant_id, row.key, row.version),
                    {
                        "Dripiq-Timer-Key": row.key,
                        "Dripiq-Timer-Kind": row.kind,
                        "Dripiq-Timer-Version": str(row.version),
                        "Dripiq-Fire-At": row.scheduled_for.isoformat(),
                    },
                )
                for row in rows
            ],
            ack_timeout=self.publish_timeout,
        )

    def _record(self, plan: domain.Round[Row[Any]], fired: Sequence[Row[Any]], published_at: datetime) -> None:
        """Metrics and logs, once the round has committed."""
        failed = len(plan.fire) - len(fired)
        metrics.TIMERS_FIRED.inc(len(fired))
        for row in fired:
            metrics.FIRE_LATENESS.observe(max(0.0, (published_at - row.scheduled_for).total_seconds()))
        if failed:
            metrics.PUBLISH_FAILURES.inc(failed)
            log.warning("firer.publish_failed", failed=failed, fired=len(fired))
        if plan.drop:
            metrics.TIMERS_DROPPED.inc(len(plan.drop))
            log.warning("firer.overdue_dropped", count=len(plan.drop), overdue_limit_seconds=self.overdue.limit_seconds)
        if plan.delay:
            metrics.TIMERS_DELAYED.inc(len(plan.delay))
            log.warning(
                "firer.overdue_delayed",
                count=len(plan.delay),
                overdue_limit_seconds=self.overdue.limit_seconds,
                spread_seconds=self.overdue.spread_seconds,
            )
        if plan.late:
            log.warning("firer.overdue_fired", count=plan.late, overdue_limit_seconds=self.overdue.limit_seconds)
        log.debug("firer.fired", count=len(fired))
