"""A message's outcome fact, written to the dispatcher's outbox in the caller's transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq.dispatcher.v1 import messages_pb2
from dripiq_common.bus.contract import Subjects
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_dispatcher import metrics
from dripiq_dispatcher.models import outbox


async def enqueue_outcome(conn: AsyncConnection, fact: messages_pb2.MessageOutcome) -> None:
    message = OutboxMessage(Subjects.message_outcome(fact.tenant_id), fact)
    await enqueue(conn, outbox, [message])
    # Counted as written: these rarer paths (tasks, late settlements) seldom roll back.
    metrics.count_outcomes([message])
