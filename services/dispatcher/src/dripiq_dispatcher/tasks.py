"""Call and LinkedIn steps: the task a person performs instead of a send, and CompleteTask,
which records its outcome as the step's and as engagement when it is one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import dispatcher_service_pb2 as pb
from dripiq.dispatcher.v1 import messages_pb2
from dripiq.events.v1 import messages_pb2 as events_pb2
from dripiq_common import engagement, validation
from dripiq_common.clock import Clock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_common.outbox import enqueue
from dripiq_dispatcher import convert, domain, outcomes, repository
from dripiq_dispatcher.domain import NewMessage, Status
from dripiq_dispatcher.models import outbox
from dripiq_dispatcher.outcomes import enqueue_outcome

log = structlog.get_logger(__name__)

# A completion time may run this far ahead of our clock (the reporting device's clock).
COMPLETED_AT_SKEW = timedelta(minutes=5)


@dataclass
class Tasks:
    engine: AsyncEngine
    clock: Clock
    # Wakes the outbox relay after a commit that wrote outcomes, instead of waiting its poll.
    on_outbox: Callable[[], None] = field(default=lambda: None)

    async def complete_task(self, request: pb.CompleteTaskRequest) -> pb.Message:
        """Record a task's outcome: the step counts as done (a SENT outcome at completed_at),
        and a reply or a decline is published as engagement for the campaign's rules."""
        tenant = validation.tenant_id(request.tenant_id)
        message_id = validation.required(request.message_id, "message_id")
        outcome_name = convert.task_outcome(request.outcome)
        notes = validation.optional(request.notes, "notes", max_length=domain.MAX_TASK_NOTES)
        now = self.clock.now()
        completed_at = request.completed_at.ToDatetime(tzinfo=UTC) if request.HasField("completed_at") else now
        if completed_at > now + COMPLETED_AT_SKEW:
            raise InvalidArgument("completed_at", "must not be in the future")
        async with self.engine.begin() as conn:
            row = await repository.messages.get_message(conn, tenant_id=tenant, message_id=message_id, lock=True)
            if row is None:
                raise NotFound(f"message {message_id!r} not found")
            if row.status == Status.TASK_DONE and row.task_outcome == outcome_name:
                return convert.message_to_proto(row)
            if row.status == Status.TASK_DONE:
                raise FailedPrecondition(f"task {message_id!r} was already completed as {row.task_outcome!r}")
            if row.status != Status.TASK_OPEN:
                raise FailedPrecondition(f"message {message_id!r} is not an open task (it is {row.status!r})")
            await repository.messages.set_status(
                conn,
                message_id=message_id,
                expected=[Status.TASK_OPEN],
                status=Status.TASK_DONE,
                now=now,
                task_outcome=outcome_name,
                task_notes=notes or None,
                sent_at=completed_at,
            )
            await enqueue_outcome(
                conn,
                outcomes.outcome_for_row(
                    row,
                    messages_pb2.OUTCOME_KIND_SENT,
                    occurred_at=completed_at,
                    reason=f"task {outcome_name}",
                    task_outcome=outcome_name,
                ),
            )
            fact = task_engagement(row, outcome_name, occurred_at=completed_at)
            if fact is not None:
                await enqueue(conn, outbox, engagement.outbox_messages([fact]))
            updated = await repository.messages.get_message(conn, tenant_id=tenant, message_id=message_id)
        self.on_outbox()
        log.info("task.completed", tenant_id=tenant, message_id=message_id, outcome=outcome_name)
        return convert.message_to_proto(updated)


def task_created(message: NewMessage, *, now: datetime) -> messages_pb2.TaskCreated:
    fact = messages_pb2.TaskCreated(
        tenant_id=message.tenant_id,
        message_id=message.message_id,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
        contact_id=message.contact_id,
        channel=message.channel,
        to_email=message.to_email,
        to_name=message.to_name,
        title=message.subject,
        instructions=message.body_text,
    )
    fact.created_at.FromDatetime(now)
    return fact


def task_engagement(row: Any, outcome_name: str, *, occurred_at: datetime) -> events_pb2.EngagementEvent | None:
    """The engagement fact a completed task stands for (a reply or an unsubscribe), or None."""
    event_type = engagement.TASK_ENGAGEMENT.get(outcome_name)
    if event_type is None:
        return None
    event = events_pb2.EngagementEvent(
        tenant_id=row.tenant_id,
        # One completion per task: the id is stable, so the fact is published once.
        event_id=engagement.task_event_id(row.message_id),
        message_id=row.message_id,
        campaign_id=row.campaign_id,
        step_index=row.step_index,
        contact_id=row.contact_id,
        event_type=event_type,
        email=row.to_email,
        reason=f"{row.channel} task: {outcome_name}",
    )
    event.occurred_at.FromDatetime(occurred_at)
    return event
