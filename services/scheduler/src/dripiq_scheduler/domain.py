"""Timer rules: what a valid timer is, and how one becomes a bus message when it fires."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.bus.contract import Streams, stream_for_subject
from dripiq_common.errors import InvalidArgument
from dripiq_scheduler.models import TimerStatus
from dripiq_scheduler.repository import NewTimer

# Timers may only target work queues that exist for due work.
TARGET_STREAMS = {Streams.PLANNER_TIMERS.name, Streams.DISPATCHER_SEND.name}
MAX_PAYLOAD_BYTES = 64 * 1024


def new_timer(timer: pb.Timer, field: str = "timer") -> NewTimer:
    tenant = validation.tenant_id(timer.tenant_id, f"{field}.tenant_id")
    key = validation.required(timer.key, f"{field}.key", max_length=200)
    kind = validation.required(timer.kind, f"{field}.kind", max_length=64)
    fire_at = validation.timestamp(timer.fire_at, f"{field}.fire_at", present=timer.HasField("fire_at"))
    subject = validation.required(timer.target_subject, f"{field}.target_subject")
    stream = stream_for_subject(subject)
    if stream is None or stream.name not in TARGET_STREAMS:
        raise InvalidArgument(f"{field}.target_subject", f"no timer target stream takes {subject!r}")
    if not subject.endswith(f".{tenant}"):
        raise InvalidArgument(f"{field}.target_subject", "must end with the timer's tenant_id")
    if len(timer.payload) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(f"{field}.payload", f"must be at most {MAX_PAYLOAD_BYTES} bytes")
    return NewTimer(
        tenant_id=tenant,
        key=key,
        group_key=timer.group_key,
        kind=kind,
        fire_at=fire_at,
        target_subject=subject,
        payload=timer.payload,
    )


def dedupe_id(tenant_id: str, key: str, version: int) -> str:
    """A timer version fires at most once on the bus, even if a crash repeats the publish."""
    return f"timer:{tenant_id}:{key}:{version}"


_STATUS = {
    TimerStatus.ACTIVE: pb.TIMER_STATUS_ACTIVE,
    TimerStatus.FIRED: pb.TIMER_STATUS_FIRED,
    TimerStatus.CANCELED: pb.TIMER_STATUS_CANCELED,
}
_STATUS_NAMES: dict[int, str] = {v: k for k, v in _STATUS.items()}


def status_filter(value: int) -> str | None:
    """ListTimers' status: UNSPECIFIED lists every status."""
    if value == pb.TIMER_STATUS_UNSPECIFIED:
        return None
    if value not in _STATUS_NAMES:
        raise InvalidArgument("status", f"unknown TimerStatus {value}")
    return _STATUS_NAMES[value]


def to_proto(row) -> pb.Timer:
    timer = pb.Timer(
        tenant_id=row.tenant_id,
        key=row.key,
        group_key=row.group_key,
        kind=row.kind,
        target_subject=row.target_subject,
        payload=row.payload,
        status=_STATUS[row.status],
        version=row.version,
    )
    timer.fire_at.FromDatetime(row.scheduled_for)
    if row.fired_at is not None:
        timer.fired_at.FromDatetime(row.fired_at)
    return timer


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
    digest = hashlib.blake2b(f"{tenant_id}\0{key}\0{version}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * spread_seconds


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
