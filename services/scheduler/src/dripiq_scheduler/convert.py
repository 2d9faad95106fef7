"""Proto <-> domain for the scheduler: a Timer from the API or the bus into a timer to store,
a stored row into the API's Timer, and ListTimers' status filter."""

from __future__ import annotations

from typing import Any

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.errors import InvalidArgument
from dripiq_scheduler.domain import MAX_PAYLOAD_BYTES, Target, check_timer, target_for_subject
from dripiq_scheduler.models import TimerStatus
from dripiq_scheduler.repository import NewTimer

_TARGETS = {
    pb.TIMER_TARGET_PLANNER_TIMER: Target.PLANNER_TIMER,
    pb.TIMER_TARGET_DISPATCHER_SEND: Target.DISPATCHER_SEND,
}
_TARGET_NUMBERS = {v: k for k, v in _TARGETS.items()}


def new_timer(
    timer: pb.Timer, field: str = "timer", *, tenant_id: str | None = None, max_payload: int = MAX_PAYLOAD_BYTES
) -> NewTimer:
    """A timer from the API or a TimerCommand, checked as the firer will check it (domain).
    `tenant_id`, when given, stands for the timer's own (a batch's tenant, the caller having
    checked the timer's is empty or the same)."""
    tenant = timer.tenant_id if tenant_id is None else tenant_id
    if timer.target == pb.TIMER_TARGET_UNSPECIFIED:
        # Commands outboxed by an older planner or dispatcher name only the subject.
        target = target_for_subject(tenant, timer.target_subject)
    elif timer.target in _TARGETS:
        target = _TARGETS[timer.target]
    else:
        raise InvalidArgument(f"{field}.target", f"unknown TimerTarget {timer.target}")
    checked = check_timer(
        tenant_id=tenant,
        key=timer.key,
        group_key=timer.group_key,
        kind=timer.kind,
        target=target,
        subject=timer.target_subject,
        payload=timer.payload,
        field=field,
        max_payload=max_payload,
    )
    fire_at = validation.timestamp(timer.fire_at, f"{field}.fire_at", present=timer.HasField("fire_at"))
    return NewTimer(
        tenant_id=checked.tenant_id,
        key=checked.key,
        group_key=checked.group_key,
        kind=checked.kind,
        fire_at=fire_at,
        target=checked.target,
        target_subject=checked.subject,
        payload=timer.payload,
    )


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


def to_proto(row: Any) -> pb.Timer:
    timer = pb.Timer(
        tenant_id=row.tenant_id,
        key=row.key,
        group_key=row.group_key,
        kind=row.kind,
        target=_TARGET_NUMBERS.get(row.target, pb.TIMER_TARGET_UNSPECIFIED),
        target_subject=row.target_subject,
        payload=row.payload,
        status=_STATUS[row.status],
        version=row.version,
    )
    timer.fire_at.FromDatetime(row.scheduled_for)
    if row.fired_at is not None:
        timer.fired_at.FromDatetime(row.fired_at)
    if row.canceled_at is not None:
        timer.canceled_at.FromDatetime(row.canceled_at)
    timer.cancel_reason = row.cancel_reason or ""
    return timer
