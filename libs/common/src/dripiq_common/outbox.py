"""The transactional outbox: a state change and the messages it causes commit together.

Each schema has its own `outbox` table. The relay publishes rows with `Nats-Msg-Id` set to
`<schema>:<id>` so a crash between PubAck and delete is absorbed by JetStream's dedupe
window, then deletes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog
from google.protobuf.message import Message as ProtoMessage
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.scheduler.v1 import commands_pb2
from dripiq_common import bulk
from dripiq_common.bus.client import Outgoing, publish_many
from dripiq_common.bus.contract import Subjects
from dripiq_common.loops import Poller

log = structlog.get_logger(__name__)

PUBLISHED = Counter("dripiq_outbox_published", "Outbox messages published and deleted, by outbox", ["outbox"])
OLDEST_AGE = Gauge(
    "dripiq_outbox_oldest_age_seconds",
    "Age of the oldest message waiting in the outbox, measured in relay rounds at most every 5 s (0 when empty)",
    ["outbox"],
)
BACKLOG_EVERY_SECONDS = 5.0


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False, server_default="{}"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True)
class OutboxMessage:
    subject: str
    message: ProtoMessage
    headers: Mapping[str, str] = field(default_factory=dict)


async def enqueue(conn: AsyncConnection, table: Table, messages: Iterable[OutboxMessage]) -> int:
    """Write messages into the outbox inside the caller's transaction, in one statement."""
    rows = [
        {"subject": m.subject, "payload": m.message.SerializeToString(), "headers": json.dumps(dict(m.headers))}
        for m in messages
    ]
    await bulk.insert_rows(conn, table, rows, casts={"headers": "text"})
    return len(rows)


def coalesce_timer_commands(messages: list[OutboxMessage]) -> list[OutboxMessage]:
    """One scheduler command per tenant carrying all its timer commands in order; the rest as is.

    The scheduler applies a command's ops in one transaction, so a batch that schedules or
    cancels hundreds of timers costs it one message per tenant, not hundreds."""
    timer_ops: dict[str, list[commands_pb2.TimerCommand]] = {}
    others: list[OutboxMessage] = []
    for message in messages:
        if isinstance(message.message, commands_pb2.TimerCommand):
            timer_ops.setdefault(message.message.tenant_id, []).append(message.message)
        else:
            others.append(message)
    for tenant_id, ops in timer_ops.items():
        command = (
            ops[0]
            if len(ops) == 1
            else commands_pb2.TimerCommand(tenant_id=tenant_id, ops=commands_pb2.TimerOps(commands=ops))
        )
        others.append(OutboxMessage(Subjects.scheduler_command(tenant_id), command))
    return others


@dataclass
class OutboxRelay:
    engine: AsyncEngine
    js: JetStreamContext
    table: Table
    batch_size: int = 500
    poll_seconds: float = 1.0
    _next_measure: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._poller = Poller(
            self.relay_once, full=self.batch_size, poll_seconds=self.poll_seconds, name=f"outbox:{self.table.schema}"
        )

    def kick(self) -> None:
        """Called after a commit that wrote to the outbox, so it goes out without waiting a poll."""
        self._poller.wake()

    def stop(self) -> None:
        self._poller.stop()

    async def run(self) -> None:
        await self._poller.run()
        # Whatever was committed before the stop still goes out.
        try:
            while await self.relay_once() >= self.batch_size:
                pass
        except Exception as exc:
            log.warning("outbox.final_relay_failed", outbox=self.table.schema, error=repr(exc))

    async def relay_once(self) -> int:
        """Publish one batch; rows whose PubAck did not come stay for the next round."""
        t = self.table
        done: list[int] = []
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(t.c.id, t.c.subject, t.c.payload, t.c.headers)
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                acked = await publish_many(
                    self.js,
                    [Outgoing(row.subject, row.payload, f"{t.schema}:{row.id}", row.headers) for row in rows],
                )
                done = [row.id for row, ok in zip(rows, acked, strict=True) if ok]
                if done:
                    await conn.execute(delete(t).where(t.c.id.in_(done)))
            await self._measure_backlog(conn)
        PUBLISHED.labels(outbox=t.schema).inc(len(done))
        if len(rows) > len(done):
            log.warning("outbox.publish_failed", outbox=t.schema, failed=len(rows) - len(done))
        return len(done)

    async def _measure_backlog(self, conn: AsyncConnection) -> None:
        """The oldest message still waiting once this round's are deleted: at most every
        BACKLOG_EVERY_SECONDS, so a relay kicked after every commit adds no query per round."""
        now = time.monotonic()
        if now < self._next_measure:
            return
        self._next_measure = now + BACKLOG_EVERY_SECONDS
        t = self.table
        oldest = (await conn.execute(select(t.c.created_at, func.now()).order_by(t.c.id).limit(1))).first()
        OLDEST_AGE.labels(outbox=t.schema).set((oldest[1] - oldest[0]).total_seconds() if oldest else 0)
