"""The scheduler's Prometheus metrics (served by dripiq_common.metrics) and the loop that
keeps the pending gauge fresh."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq_common.loops import Poller
from dripiq_scheduler import repository

log = structlog.get_logger(__name__)

TIMERS_PENDING = Gauge(
    "dripiq_scheduler_timers_pending",
    "Active timers (due or not), exact up to SCHEDULER_PENDING_EXACT_UP_TO, PostgreSQL's estimate above",
)
TIMERS_FIRED = Counter("dripiq_scheduler_timers_fired", "Timers published to JetStream and marked fired")
FIRE_LATENESS = Histogram(
    "dripiq_scheduler_fire_lateness_seconds",
    "Publish time minus the timer's fire_at",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
PUBLISH_FAILURES = Counter(
    "dripiq_scheduler_publish_failures",
    "Due timers whose publish got no PubAck in time; they stay active and fire in a later round",
)
TIMERS_DEAD_LETTERED = Counter(
    "dripiq_scheduler_timers_dead_lettered",
    "Due timers that could never be published: dead letters of scheduler-firer, canceled with the reason",
)
TIMERS_DROPPED = Counter("dripiq_scheduler_timers_dropped", "Overdue timers canceled by overdue_policy=drop")
TIMERS_DELAYED = Counter("dripiq_scheduler_timers_delayed", "Overdue timers moved later by overdue_policy=delay")
TIMERS_PRUNED = Counter("dripiq_scheduler_timers_pruned", "Fired and canceled timers deleted after retention")


@dataclass
class PendingGauge:
    """Refreshes dripiq_scheduler_timers_pending every `refresh_seconds`.

    Every replica refreshes the same gauge; take max(), not sum(), across replicas.
    """

    engine: AsyncEngine
    refresh_seconds: float = 15.0
    exact_up_to: int = 100_000

    def __post_init__(self) -> None:
        self._poller = Poller(self.refresh_once, full=1, poll_seconds=self.refresh_seconds, name="pending-gauge")

    def stop(self) -> None:
        self._poller.stop()

    async def run(self) -> None:
        await self._poller.run()

    async def refresh_once(self) -> int:
        async with self.engine.connect() as conn:
            pending = await repository.estimate_active(conn, exact_up_to=self.exact_up_to)
        TIMERS_PENDING.set(pending)
        # Never "full": the poller waits refresh_seconds before the next round.
        return 0
