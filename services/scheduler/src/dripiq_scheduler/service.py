"""Timer operations shared by the gRPC API and the JetStream command consumer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.scheduler.v1 import commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, NotFound, PermanentMessageError
from dripiq_common.jetstream import decode
from dripiq_scheduler import domain, repository
from dripiq_scheduler.repository import NewTimer

log = structlog.get_logger(__name__)


@dataclass
class TimerService:
    engine: AsyncEngine
    clock: Clock
    # Wakes the firer when a timer is already due, instead of waiting for its next poll.
    on_scheduled_due: Callable[[], None] = field(default=lambda: None)

    async def schedule(self, timer: pb.Timer) -> pb.Timer:
        new = domain.new_timer(timer)
        now = self.clock.now()
        async with self.engine.begin() as conn:
            row = await repository.schedule(conn, timer=new, now=now)
        if new.fire_at <= now:
            if domain.lateness_seconds(new.fire_at, now) > 60:
                log.info(
                    "timer.scheduled_in_past_fires_now",
                    tenant_id=new.tenant_id,
                    key=new.key,
                    fire_at=new.fire_at.isoformat(),
                )
            self.on_scheduled_due()
        return domain.to_proto(row)

    async def schedule_many(self, batch: Sequence[pb.Timer]) -> int:
        """Schedule many timers in one transaction; all are valid or none is stored."""
        news = [domain.new_timer(timer, f"timers[{i}]") for i, timer in enumerate(batch)]
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await repository.schedule_many(conn, batch=news, now=now)
        if any(new.fire_at <= now for new in news):
            self.on_scheduled_due()
        return len(news)

    async def cancel(self, tenant_id: str, key: str) -> pb.Timer:
        tenant = validation.tenant_id(tenant_id)
        validation.required(key, "key")
        async with self.engine.begin() as conn:
            row = await repository.cancel(conn, tenant_id=tenant, key=key, now=self.clock.now())
        if row is None:
            raise NotFound(f"timer {key!r} not found")
        return domain.to_proto(row)

    async def cancel_group(self, tenant_id: str, group_key: str) -> int:
        tenant = validation.tenant_id(tenant_id)
        validation.required(group_key, "group_key")
        async with self.engine.begin() as conn:
            return await repository.cancel_group(conn, tenant_id=tenant, group_key=group_key, now=self.clock.now())

    async def get(self, tenant_id: str, key: str) -> pb.Timer:
        tenant = validation.tenant_id(tenant_id)
        validation.required(key, "key")
        async with self.engine.connect() as conn:
            row = await repository.get(conn, tenant_id=tenant, key=key)
        if row is None:
            raise NotFound(f"timer {key!r} not found")
        return domain.to_proto(row)

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
                    steps.append((kind, domain.new_timer(op)))  # type: ignore[arg-type]
                else:
                    validation.tenant_id(op.tenant_id)  # type: ignore[attr-defined]
                    steps.append((kind, op))
        except InvalidArgument as exc:
            raise PermanentMessageError(f"invalid TimerCommand: {exc}") from exc
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await _apply_in_order(conn, steps, now)
        if any(kind == "schedule" and new.fire_at <= now for kind, new in steps):  # type: ignore[attr-defined]
            self.on_scheduled_due()


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
    cancels: dict[tuple[str, str], None] = {}

    async def write() -> None:
        if schedules:
            await repository.schedule_many(conn, batch=list(schedules.values()), now=now)
        for tenant_id in {tenant for tenant, _ in cancels}:
            keys = [key for tenant, key in cancels if tenant == tenant_id]
            await repository.cancel_many(conn, tenant_id=tenant_id, keys=keys, now=now)
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
            cancels[key] = None
    await write()
