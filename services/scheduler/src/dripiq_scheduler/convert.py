"""Proto <-> domain for the scheduler: a Timer from the API or the bus into a timer to store,
a stored row into the API's Timer, and ListTimers' status filter."""

from __future__ import annotations

from typing import Any

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.bus.contract import stream_for_subject
from dripiq_common.errors import InvalidArgument
from dripiq_scheduler.domain import MAX_PAYLOAD_BYTES, TARGET_STREAMS
from dripiq_scheduler.models import TimerStatus
from dripiq_scheduler.repository import NewTimer


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
        target_subject=row.target_subject,
        payload=row.payload,
        status=_STATUS[row.status],
        version=row.version,
    )
    timer.fire_at.FromDatetime(row.scheduled_for)
    if row.fired_at is not None:
        timer.fired_at.FromDatetime(row.fired_at)
    return timer
