"""Fires due timers onto JetStream.

Each round locks a batch of due rows (SKIP LOCKED, so replicas share the work), publishes
them without waiting for each ack, waits for all acks, then marks the acked ones fired in the
same transaction. A cancel that commits first wins: it changed the row before we locked it.
A crash after publishing but before commit re-publishes the same `Nats-Msg-Id`, which
JetStream drops inside its duplicate window.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.jetstream import Outgoing, publish_many
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
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                fired = await self.fire_once()
            except Exception as exc:
                log.warning("firer.round_failed", error=repr(exc))
                fired = 0
                await asyncio.sleep(self.poll_seconds * 5)
            if fired >= self.batch_size:
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

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
                timeout=self.publish_timeout,
            )
            fired = [row.id for row, ok in zip(due, acked, strict=True) if ok]
            await repository.mark_fired(conn, ids=fired, now=self.clock.now())
        if len(fired) < len(due):
            log.warning("firer.publish_failed", failed=len(due) - len(fired))
        log.debug("firer.fired", count=len(fired))
        return len(fired)
