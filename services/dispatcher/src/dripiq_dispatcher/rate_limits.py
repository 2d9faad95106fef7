"""Send budgets per tenant and channel: the API that sets and reads them, and the pruning of
counters of windows long over. Admission takes from them (admission.Admission)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument
from dripiq_dispatcher import budgets, domain, repository

log = structlog.get_logger(__name__)

# Rate-limit counters deleted per round of the pruner.
PRUNE_BATCH = 5000


@dataclass(frozen=True)
class RateLimits:
    engine: AsyncEngine
    clock: Clock

    async def set_rate_limit(self, given: pb.RateLimit) -> pb.RateLimit:
        tenant = validation.tenant_id(given.tenant_id, "rate_limit.tenant_id")
        channel = _rate_limit_channel(given.channel, "rate_limit.channel")
        limits: dict[str, int] = {}
        for window in budgets.WINDOWS:
            value = getattr(given, f"per_{window}")
            if value < 0:
                raise InvalidArgument(f"rate_limit.per_{window}", "must not be negative (0 means no limit)")
            limits[window] = value
        async with self.engine.begin() as conn:
            await repository.rate_limits.set_rate_limit(
                conn, tenant_id=tenant, channel=channel, limits=limits, now=self.clock.now()
            )
        log.info("rate_limit.set", tenant_id=tenant, channel=channel, **limits)
        return _rate_limit_proto(tenant, channel, limits)

    async def get_rate_limit(self, tenant_id: str, channel: str) -> pb.RateLimit:
        """An unset limit reads as zeros (no limit)."""
        tenant = validation.tenant_id(tenant_id)
        checked = _rate_limit_channel(channel, "channel")
        async with self.engine.connect() as conn:
            limits = await repository.rate_limits.get_rate_limit(conn, tenant_id=tenant, channel=checked)
        return _rate_limit_proto(tenant, checked, limits)

    async def prune_rate_counters(self, *, limit: int = PRUNE_BATCH) -> int:
        """Delete counters of windows long over (nothing reads them again); how many went."""
        ended_before = self.clock.now() - budgets.COUNTER_RETENTION
        async with self.engine.begin() as conn:
            pruned = await repository.rate_limits.prune_counters(conn, ended_before=ended_before, limit=limit)
        if pruned:
            log.info("rate_counters.pruned", count=pruned)
        return pruned


def _rate_limit_channel(value: str, field: str) -> str:
    channel = value.strip().lower()
    if channel not in domain.SUPPORTED_CHANNELS:
        raise InvalidArgument(field, f"must be one of {', '.join(sorted(domain.SUPPORTED_CHANNELS))}")
    return channel


def _rate_limit_proto(tenant_id: str, channel: str, limits: dict[str, int]) -> pb.RateLimit:
    return pb.RateLimit(
        tenant_id=tenant_id,
        channel=channel,
        per_minute=limits["minute"],
        per_hour=limits["hour"],
        per_day=limits["day"],
    )
