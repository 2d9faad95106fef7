"""Fires due timers onto JetStream.

Each round locks a batch of due rows (SKIP LOCKED, so replicas share the work), publishes
them without waiting for each ack, waits for all acks, then marks the acked ones fired in the
same transaction. A cancel that commits first wins: it changed the row before we locked it.
A crash after publishing but before commit re-publishes the same `Nats-Msg-Id`, which
JetStream drops inside its duplicate window.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.jetstream import Outgoing, publish_many
from dripiq_common.loops import Poller
from dripiq_scheduler import domain, repository

log = structlog.get_logger(__name__)


@dataclass
class Firer:
    engine: AsyncEngine
    js: JetStreamContext
    clock: Clock
    batch_size: int = 1000
    poll_seconds: float = 0.2
    publish_timeout: float = 10.0

    def __post_init__(self) -> None:
        self._poller = Poller(self.fire_once, full=self.batch_size, poll_seconds=self.poll_seconds, name="firer")

    def wake(self) -> None:
        self._poller.wake()

    def stop(self) -> None:
        self._poller.stop()

    async def run(self) -> None:
        await self._poller.run()

    async def fire_once(self) -> int:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            due = await repository.lock_due(conn, now=now, limit=self.batch_size)
            if not due:
                return 0
            acked = await publish_many(
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
                    for row in due
                ],
                ack_timeout=self.publish_timeout,
            )
            fired = [row.id for row, ok in zip(due, acked, strict=True) if ok]
            await repository.mark_fired(conn, ids=fired, now=self.clock.now())
        if len(fired) < len(due):
            log.warning("firer.publish_failed", failed=len(due) - len(fired))
        log.debug("firer.fired", count=len(fired))
        return len(fired)
