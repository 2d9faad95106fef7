"""Deletes finished timers once they are past retention, a batch per transaction.

Fired and canceled rows are kept for a while so a redelivered schedule command still finds
its timer (and stays a no-op) and so ListTimers can show recent history; after that they
are only weight on the table and its indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.clock import Clock
from dripiq_common.loops import Poller
from dripiq_scheduler import metrics, repository

log = structlog.get_logger(__name__)


@dataclass
class Pruner:
    engine: AsyncEngine
    clock: Clock
    retention_seconds: float = 7 * 24 * 3600
    batch_size: int = 5000
    poll_seconds: float = 60.0

    def __post_init__(self) -> None:
        # A full batch means more is waiting: the poller goes again at once.
        self._poller = Poller(self.prune_once, full=self.batch_size, poll_seconds=self.poll_seconds, name="pruner")

    def stop(self) -> None:
        self._poller.stop()

    async def run(self) -> None:
        await self._poller.run()

    async def prune_once(self) -> int:
        before = self.clock.now() - timedelta(seconds=self.retention_seconds)
        async with self.engine.begin() as conn:
            deleted = await repository.prune(conn, before=before, limit=self.batch_size)
        if deleted:
            metrics.TIMERS_PRUNED.inc(deleted)
            log.info("pruner.deleted", count=deleted, before=before.isoformat())
        return deleted
