"""Timer operations shared by the gRPC API and the JetStream command consumer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.scheduler.v1 import commands_pb2
from dripiq.scheduler.v1 import scheduler_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import InvalidArgument, NotFound, PermanentMessageError
from dripiq_common.jetstream import decode
from dripiq_scheduler import domain, repository

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
        """A TimerCommand from another service's outbox. Idempotent: safe to redeliver."""
        command = decode(commands_pb2.TimerCommand, data)
        kind = command.WhichOneof("command")
        try:
            if kind == "schedule":
                await self.schedule(command.schedule)
            elif kind == "schedule_batch":
                await self.schedule_many(command.schedule_batch.timers)
            elif kind == "cancel":
                try:
                    await self.cancel(command.cancel.tenant_id, command.cancel.key)
                except NotFound:
                    log.info("timer.cancel_unknown_key", key=command.cancel.key)
            elif kind == "cancel_group":
                await self.cancel_group(command.cancel_group.tenant_id, command.cancel_group.group_key)
            else:
                raise PermanentMessageError("TimerCommand without a command")
        except InvalidArgument as exc:
            raise PermanentMessageError(f"invalid TimerCommand: {exc}") from exc
