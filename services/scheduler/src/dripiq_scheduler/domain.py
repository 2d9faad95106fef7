"""Timer rules: what a valid timer is, and how one becomes a bus message when it fires."""

from __future__ import annotations

from datetime import datetime

from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.errors import InvalidArgument
from dripiq_common.jetstream import Streams, stream_for_subject
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
    "active": pb.TIMER_STATUS_ACTIVE,
    "fired": pb.TIMER_STATUS_FIRED,
    "canceled": pb.TIMER_STATUS_CANCELED,
}


def to_proto(row) -> pb.Timer:  # type: ignore[no-untyped-def]
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
