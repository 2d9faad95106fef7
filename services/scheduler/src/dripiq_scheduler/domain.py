"""Timer rules without I/O: what a timer may hold and where it may go, how a timer version
fires once on the bus, and what happens to timers found overdue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from typing import Generic, Protocol, TypeVar

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb2
from dripiq.planner.v1 import timers_pb2 as planner_timers_pb2
from dripiq_common import validation
from dripiq_common.bus.contract import Streams, StreamSpec, Subjects, tenants_in
from dripiq_common.errors import InvalidArgument
from dripiq_common.seeded import seeded_fraction

# Bump when check_timer gets stricter: rows stored under an older version are checked again
# before they fire (the timers table's rules_checked; docs/decisions/0051).
RULES_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
# What a timer's message carries besides its payload: its headers (key, kind, version, fire-at,
# the dedupe id) and, as a dead letter, the error and tenant headers too.
HEADER_ALLOWANCE_BYTES = 4096
MAX_KEY_LENGTH = 200
MAX_KIND_LENGTH = 64


class Target(StrEnum):
    """Where a due timer's payload goes (the timers table's `target`, the API's TimerTarget)."""

    PLANNER_TIMER = "planner_timer"
    DISPATCHER_SEND = "dispatcher_send"


@dataclass(frozen=True)
class TargetSpec:
    stream: StreamSpec
    subject: Callable[[str], str]
    payload: type[ProtoMessage]


# Only work queues that exist for due work; the subject is always built from the tenant.
TARGETS: dict[Target, TargetSpec] = {
    Target.PLANNER_TIMER: TargetSpec(Streams.PLANNER_TIMERS, Subjects.planner_timer, planner_timers_pb2.PlannerTimer),
    Target.DISPATCHER_SEND: TargetSpec(
        Streams.DISPATCHER_SEND, Subjects.dispatcher_send, dispatcher_pb2.SendMessageCommand
    ),
}


def target_for_subject(tenant_id: str, subject: str) -> Target | None:
    """The target whose subject for this tenant is exactly `subject` (a caller, or a stored row,
    older than targets)."""
    if not validation.is_tenant(tenant_id):
        return None
    return next((target for target, spec in TARGETS.items() if spec.subject(tenant_id) == subject), None)


@lru_cache(maxsize=4096)
def _subject(target: Target, tenant_id: str) -> str:
    """A checked tenant's subject for a target; a batch's timers share one, built once."""
    return TARGETS[target].subject(tenant_id)


@dataclass(frozen=True)
class CheckedTimer:
    tenant_id: str
    key: str
    group_key: str
    kind: str
    target: Target
    subject: str


def check_timer(
    *,
    tenant_id: str,
    key: str,
    group_key: str,
    kind: str,
    target: Target | None,
    subject: str,
    payload: bytes,
    field: str = "timer",
    max_payload: int = MAX_PAYLOAD_BYTES,
) -> CheckedTimer:
    """Everything about a timer that the bus depends on, for a timer to store and for a stored
    row about to fire alike: its tenant (a subject token), key, group and kind (headers), its
    target, the subject built from both (`subject`, when given, must be that one) and a payload
    of the target's type for this tenant, no larger than `max_payload` (bus_payload_limit).
    Raises InvalidArgument naming the field."""
    tenant = validation.tenant_id(tenant_id, f"{field}.tenant_id")
    validation.header_safe(key, f"{field}.key", max_length=MAX_KEY_LENGTH)
    validation.header_safe(group_key, f"{field}.group_key", max_length=MAX_KEY_LENGTH, required=False)
    validation.kind(kind, f"{field}.kind", max_length=MAX_KIND_LENGTH)
    if target is None:
        raise InvalidArgument(f"{field}.target", "is required: where the timer's payload goes when it is due")
    spec = TARGETS[target]
    built = _subject(target, tenant)
    if subject and subject != built:
        raise InvalidArgument(
            f"{field}.target_subject", f"is set by the scheduler from target and tenant_id; leave it empty or {built!r}"
        )
    check_payload(spec.payload, tenant, payload, f"{field}.payload", max_payload)
    return CheckedTimer(tenant_id=tenant, key=key, group_key=group_key, kind=kind, target=target, subject=built)


def bus_payload_limit(server_max_payload: int) -> int:
    """The largest payload a timer may carry on this bus: the scheduler's own cap, or less when
    the NATS server's max_payload (as it announced on connect) leaves less beside the headers.
    A timer stored under it is one the bus can take when it is due."""
    return max(0, min(MAX_PAYLOAD_BYTES, server_max_payload - HEADER_ALLOWANCE_BYTES))


def check_payload(
    kind: type[ProtoMessage], tenant_id: str, payload: bytes, field: str, max_payload: int = MAX_PAYLOAD_BYTES
) -> None:
    """A serialized `kind` for this tenant alone: a timer never carries another tenant's work."""
    if len(payload) > max_payload:
        raise InvalidArgument(
            field, f"is {len(payload)} bytes; must be at most {max_payload} bytes (what the message bus takes)"
        )
    message = kind()
    try:
        message.ParseFromString(payload)
    except DecodeError as exc:
        raise InvalidArgument(field, f"is not a serialized {kind.DESCRIPTOR.full_name}") from exc
    if getattr(message, "tenant_id", "") != tenant_id:
        raise InvalidArgument(field, f"must be a {kind.DESCRIPTOR.full_name} whose tenant_id is the timer's tenant_id")
    if _nests_tenants(kind.DESCRIPTOR) and (others := tenants_in(message) - {tenant_id}):
        raise InvalidArgument(field, f"names another tenant ({len(others)}) than the timer's")


@cache
def _nests_tenants(descriptor: Descriptor, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type can hold a tenant_id below its top level: when it cannot
    (a PlannerTimer), its own tenant_id, checked above, is the only one, and walking every
    message for others is work for nothing. Decided once per type, from the descriptor."""
    for member in descriptor.fields:
        inner = member.message_type
        if inner is None or inner.full_name in _seen:
            continue
        if "tenant_id" in inner.fields_by_name or _nests_tenants(inner, _seen | {descriptor.full_name}):
            return True
    return False


class StoredTimer(Protocol):
    rules_checked: int | None
    tenant_id: str
    key: str
    group_key: str
    kind: str
    target: str | None
    target_subject: str
    payload: bytes


def unfireable(row: StoredTimer) -> str:
    """Why a stored timer can never be published ("" when it can): a row written by an older
    version, or by hand, is held to today's rules before it reaches the bus. A row the scheduler
    stored under today's rules passed them then, and its content has not changed since."""
    if row.rules_checked == RULES_VERSION:
        return ""
    target = Target(row.target) if row.target in TARGETS else None
    try:
        check_timer(
            tenant_id=row.tenant_id,
            key=row.key,
            group_key=row.group_key,
            kind=row.kind,
            target=target,
            subject=row.target_subject,
            payload=row.payload,
        )
    except InvalidArgument as exc:
        return str(exc)
    return ""


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
