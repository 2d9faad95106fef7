"""Timer rules without I/O: which streams a timer may target, how a timer version fires once on
the bus, and what happens to timers found overdue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from dripiq_common.bus.contract import Streams
from dripiq_common.seeded import seeded_fraction

# Timers may only target work queues that exist for due work.
TARGET_STREAMS = {Streams.PLANNER_TIMERS.name, Streams.DISPATCHER_SEND.name}
MAX_PAYLOAD_BYTES = 64 * 1024


def dedupe_id(tenant_id: str, key: str, version: int) -> str:
    """A timer version fires at most once on the bus, even if a crash repeats the publish."""
    return f"timer:{tenant_id}:{key}:{version}"


def lateness_seconds(fire_at: datetime, now: datetime) -> float:
    return (now - fire_at).total_seconds()


class OverduePolicy(StrEnum):
    """What a firing round does with a timer that has been due for longer than the limit."""

    FIRE = "fire"  # fire it anyway, in due order with the rest
    DROP = "drop"  # cancel it with a reason: its moment has passed
    DELAY = "delay"  # fire it a little later, spread out, so a backlog does not go out at once


@dataclass(frozen=True)
class Overdue:
    policy: OverduePolicy = OverduePolicy.FIRE
    limit_seconds: float = 3600.0
    spread_seconds: float = 300.0

    def drop_reason(self) -> str:
        return f"overdue: due for more than {self.limit_seconds:g}s when the scheduler reached it"


class DueTimer(Protocol):
    id: int
    tenant_id: str
    key: str
    version: int
    scheduled_for: datetime
    updated_at: datetime


DueT = TypeVar("DueT", bound=DueTimer)


@dataclass
class Round(Generic[DueT]):
    """One firing round's locked rows, sorted by what happens to them."""

    fire: list[DueT] = field(default_factory=list)
    drop: list[DueT] = field(default_factory=list)
    delay: list[tuple[DueT, datetime]] = field(default_factory=list)
    # Fired although past the limit (policy "fire"): only counted, for the log.
    late: int = 0


def due_since(timer: DueTimer) -> datetime:
    """When the scheduler first could have fired the timer.

    A timer stored (or re-armed) with a time already past became due when it was stored, not
    at that time: a caller who schedules "now" or "a while ago" means "fire now", and that
    must not count as a backlog the overdue policy drops. updated_at changes only on storing,
    re-arming and finishing, so for an active timer it is when its current content arrived.
    """
    return max(timer.scheduled_for, timer.updated_at)


def overdue_seconds(timer: DueTimer, now: datetime) -> float:
    return (now - due_since(timer)).total_seconds()


def jitter_seconds(tenant_id: str, key: str, version: int, spread_seconds: float) -> float:
    """A delay in [0, spread) that is the same for the same timer version on every replica."""
    return seeded_fraction(f"{tenant_id}\0{key}\0{version}", nbytes=8) * spread_seconds


def sort_due(rows: Sequence[DueT], *, now: datetime, overdue: Overdue) -> Round[DueT]:
    result: Round[DueT] = Round()
    for row in rows:
        if overdue_seconds(row, now) <= overdue.limit_seconds:
            result.fire.append(row)
        elif overdue.policy is OverduePolicy.DROP:
            result.drop.append(row)
        elif overdue.policy is OverduePolicy.DELAY:
            jitter = jitter_seconds(row.tenant_id, row.key, row.version, overdue.spread_seconds)
            result.delay.append((row, now + timedelta(seconds=jitter)))
        else:
            result.fire.append(row)
            result.late += 1
    return result
