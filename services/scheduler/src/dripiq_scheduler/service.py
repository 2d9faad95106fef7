"""Timer operations shared by the gRPC API and the JetStream command consumer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.scheduler.v1 import commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import paging, validation
from dripiq_common.bus.contract import decode
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, NotFound, PermanentMessageError
from dripiq_scheduler import convert, domain, repository
from dripiq_scheduler.repository import NewTimer

log = structlog.get_logger(__name__)

MAX_BATCH = 10_000
# A timer stored this long after its fire_at is worth a line in the log: it fires at once.
PAST_DUE_LOG_SECONDS = 60


@dataclass
class TimerService:
    engine: AsyncEngine
    clock: Clock
    # Wakes the firer when a timer is already due, instead of waiting for its next poll.
    on_scheduled_due: Callable[[], None] = field(default=lambda: None)
    # The largest payload the bus takes (domain.bus_payload_limit of the server's max_payload):
    # a larger one is refused now, naming the field, not dead-lettered when it is due.
    max_payload: int = domain.MAX_PAYLOAD_BYTES

    async def schedule(self, timer: pb.Timer) -> pb.Timer:
        new = convert.new_timer(timer, max_payload=self.max_payload)
        now = self.clock.now()
        async with self.engine.begin() as conn:
            row = await repository.schedule(conn, timer=new, now=now)
        self._stored([new], now)
        return convert.to_proto(row)

    async def schedule_many(self, batch: Sequence[pb.Timer]) -> int:
        """Schedule many timers in one transaction; all are valid or none is stored.

        Returns how many distinct timers the batch holds (a key given twice keeps its last
        content)."""
        return await self._store_many(
            [convert.new_timer(timer, f"timers[{i}]", max_payload=self.max_payload) for i, timer in enumerate(batch)]
        )

    async def _store_many(self, news: list[NewTimer]) -> int:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await repository.schedule_many(conn, batch=news, now=now)
        self._stored(news, now)
        return len({(new.tenant_id, new.key) for new in news})

    async def batch_schedule(self, tenant_id: str, batch: Sequence[pb.Timer]) -> int:
        """BatchScheduleTimers: one tenant's timers, each tenant_id empty or the batch's."""
        tenant = validation.tenant_id(tenant_id)
        _check_batch_size(len(batch), "timers")
        for i, timer in enumerate(batch):
            if timer.tenant_id not in ("", tenant):
                raise InvalidArgument(f"timers[{i}].tenant_id", "must be empty or the batch's tenant_id")
        # The last of each key, in key order: the order rows are locked in. All checked before
        # one statement writes them (checking chunks while PostgreSQL wrote the one before did
        # no better, docs/performance.md): a bad timer anywhere stores none of the batch.
        latest = {timer.key: i for i, timer in enumerate(batch)}
        stored = [
            convert.new_timer(batch[i], f"timers[{i}]", tenant_id=tenant, max_payload=self.max_payload)
            for i in (latest[k] for k in sorted(latest))
        ]
        return await self._store_many(stored)

    async def batch_cancel(self, tenant_id: str, keys: Sequence[str]) -> int:
        """BatchCancelTimers: how many of the keys were active timers and are canceled now."""
        tenant = validation.tenant_id(tenant_id)
        _check_batch_size(len(keys), "keys")
        for i, key in enumerate(keys):
            _key(key, f"keys[{i}]")
        async with self.engine.begin() as conn:
            return await repository.cancel_many(
                conn, tenant_id=tenant, cancels=[(key, "", False) for key in keys], now=self.clock.now()
            )

    async def list_timers(self, request: pb.ListTimersRequest) -> pb.ListTimersResponse:
        tenant = validation.tenant_id(request.tenant_id)
        status = convert.status_filter(request.status)
        fire_after = request.fire_after.ToDatetime(tzinfo=UTC) if request.HasField("fire_after") else None
        fire_before = request.fire_before.ToDatetime(tzinfo=UTC) if request.HasField("fire_before") else None
        if fire_after is not None and fire_before is not None and fire_before <= fire_after:
            raise InvalidArgument("fire_before", "must be later than fire_after")
        size = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token, datetime, int)
        async with self.engine.connect() as conn:
            rows = await repository.list_timers(
                conn,
                tenant_id=tenant,
                status=status,
                group_key=request.group_key,
                fire_after=fire_after,
                fire_before=fire_before,
                after=after,
                limit=size + 1,
            )
        page = rows[:size]
        token = paging.encode_token(page[-1].scheduled_for.isoformat(), page[-1].id) if len(rows) > size else ""
        return pb.ListTimersResponse(timers=[convert.to_proto(row) for row in page], next_page_token=token)

    def _stored(self, news: Sequence[NewTimer], now: datetime) -> None:
        """After a commit: wake the firer for timers already due, and say so for late ones."""
        due = [new for new in news if new.fire_at <= now]
        if not due:
            return
        late = [new for new in due if domain.lateness_seconds(new.fire_at, now) > PAST_DUE_LOG_SECONDS]
        if len(late) == 1:
            log.info(
                "timer.scheduled_in_past_fires_now",
                tenant_id=late[0].tenant_id,
                key=late[0].key,
                fire_at=late[0].fire_at.isoformat(),
            )
        elif late:
            log.info(
                "timer.scheduled_in_past_fires_now",
                count=len(late),
                tenant_ids=sorted({new.tenant_id for new in late})[:10],
                earliest_fire_at=min(new.fire_at for new in late).isoformat(),
            )
        self.on_scheduled_due()

    async def cancel(self, request: pb.CancelTimerRequest) -> pb.Timer:
        tenant = validation.tenant_id(request.tenant_id)
        key = _key(request.key, "key")
        async with self.engine.begin() as conn:
            row = await repository.cancel(
                conn,
                tenant_id=tenant,
                key=key,
                now=self.clock.now(),
                reason=_reason(request.reason),
                include_fired=request.include_fired,
            )
        if row is None:
            raise NotFound(f"timer {key!r} not found")
        return convert.to_proto(row)

    async def cancel_group(self, tenant_id: str, group_key: str) -> int:
        tenant = validation.tenant_id(tenant_id)
        _key(group_key, "group_key")
        async with self.engine.begin() as conn:
            return await repository.cancel_group(conn, tenant_id=tenant, group_key=group_key, now=self.clock.now())

    async def get(self, tenant_id: str, key: str) -> pb.Timer:
        tenant = validation.tenant_id(tenant_id)
        _key(key, "key")
        async with self.engine.connect() as conn:
            row = await repository.get(conn, tenant_id=tenant, key=key)
        if row is None:
            raise NotFound(f"timer {key!r} not found")
        return convert.to_proto(row)

    async def apply_command(self, data: bytes) -> None:
        await self.apply_commands([data])

    async def apply_commands(self, batch: Sequence[bytes]) -> None:
        """TimerCommands from other services' outboxes, applied in order in one transaction.

        Idempotent: a redelivered batch changes nothing. An invalid command can never succeed,
        so it is a PermanentMessageError (dead-lettered) rather than a retry.
        """
        ops: list[tuple[str, object]] = []
        for data in batch:
            ops += _flatten(decode(commands_pb2.TimerCommand, data))
        steps: list[tuple[str, object]] = []
        try:
            for kind, op in ops:
                if kind == "schedule":
                    steps.append((kind, convert.new_timer(op, max_payload=self.max_payload)))  # type: ignore[arg-type]
                elif kind == "cancel_group":
                    validation.tenant_id(op.tenant_id)  # type: ignore[attr-defined]
                    _key(op.group_key, "group_key")  # type: ignore[attr-defined]
                    steps.append((kind, op))
                else:
                    validation.tenant_id(op.tenant_id)  # type: ignore[attr-defined]
                    _key(op.key, "key")  # type: ignore[attr-defined]
                    _reason(op.reason)  # type: ignore[attr-defined]
                    steps.append((kind, op))
        except InvalidArgument as exc:
            raise PermanentMessageError(f"invalid TimerCommand: {exc}") from exc
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await _apply_in_order(conn, steps, now)
        self._stored([new for kind, new in steps if kind == "schedule"], now)  # type: ignore[misc]


def _key(value: str, field: str) -> str:
    """A key or group key to look up: what a timer may be stored under (domain.check_timer)."""
    return validation.header_safe(value, field, max_length=domain.MAX_KEY_LENGTH)


def _reason(value: str) -> str:
    if len(value) > validation.MAX_CANCEL_REASON:
        raise InvalidArgument("reason", f"is {len(value)} characters; at most {validation.MAX_CANCEL_REASON}")
    return value


def _check_batch_size(size: int, field: str) -> None:
    if not 1 <= size <= MAX_BATCH:
        raise InvalidArgument(field, f"needs 1 to {MAX_BATCH} items, got {size}")


def _flatten(command: commands_pb2.TimerCommand) -> list[tuple[str, object]]:
    kind = command.WhichOneof("command")
    if kind == "ops":
        return [op for inner in command.ops.commands for op in _flatten(inner)]
    if kind == "schedule_batch":
        return [("schedule", timer) for timer in command.schedule_batch.timers]
    if kind is None:
        raise PermanentMessageError("TimerCommand without a command")
    return [(kind, getattr(command, kind))]


async def _apply_in_order(conn: AsyncConnection, steps: list[tuple[str, object]], now: datetime) -> None:
    """Apply the operations as if one by one, in as few statements as that allows.

    Operations on different keys commute, so schedules and cancels gather into one statement
    each until a cancel meets a gathered schedule of its key, or the other way round (or a
    whole group is canceled, whose keys are unknown here); then what was gathered is written
    first, keeping the order.
    """
    schedules: dict[tuple[str, str], NewTimer] = {}
    # (tenant, key) -> (reason, include_fired)
    cancels: dict[tuple[str, str], tuple[str, bool]] = {}

    async def write() -> None:
        if schedules:
            await repository.schedule_many(conn, batch=list(schedules.values()), now=now)
        for tenant_id in {tenant for tenant, _ in cancels}:
            mine = [(key, *how) for (tenant, key), how in cancels.items() if tenant == tenant_id]
            await repository.cancel_many(conn, tenant_id=tenant_id, cancels=mine, now=now)
        schedules.clear()
        cancels.clear()

    for kind, op in steps:
        if kind == "cancel_group":
            await write()
            await repository.cancel_group(conn, tenant_id=op.tenant_id, group_key=op.group_key, now=now)  # type: ignore[attr-defined]
            continue
        key = (op.tenant_id, op.key)  # type: ignore[attr-defined]
        if kind == "schedule":
            if key in cancels:
                await write()
            # A later schedule of the same key replaces an earlier one: replaying the
            # command then re-applies only the final content, which is a no-op.
            schedules[key] = op  # type: ignore[assignment]
        else:
            if key in schedules:
                await write()
            cancels[key] = (op.reason, op.include_fired)  # type: ignore[attr-defined]
    await write()
