"""State changes of a campaign and the timer commands they cause, committed together.

Every function runs inside the caller's transaction and writes its commands to the planner's
outbox, so a campaign never changes without the scheduler hearing of it (and vice versa).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from dripiq.planner.v1 import timers_pb2
from dripiq.scheduler.v1 import commands_pb2, scheduler_service_pb2
from dripiq_common.jetstream import Subjects
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner import repository
from dripiq_planner.models import outbox

MESSAGE_NAMESPACE = uuid.UUID("7b0c7f5e-1d7a-4c55-9d0e-6f4a3c2b1a00")
STRATEGY_GENERATION = 1


def message_id(campaign_id: str, step_index: int, generation: int = STRATEGY_GENERATION) -> str:
    """Deterministic, so a redelivered step-due timer can never produce a second message."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{campaign_id}:{step_index}:{generation}"))


def step_timer_key(campaign_id: str) -> str:
    # Schedule-next: a campaign holds at most one step timer, re-armed for each next step.
    return f"{campaign_id}:step"


def trigger_timer_key(message_id_: str, trigger: str) -> str:
    return f"{message_id_}:{trigger}"


def campaign_group(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def _timer_command(tenant_id: str, **command: object) -> OutboxMessage:
    return OutboxMessage(
        Subjects.scheduler_command(tenant_id), commands_pb2.TimerCommand(tenant_id=tenant_id, **command)
    )


async def schedule_step(conn: AsyncConnection, *, campaign: Row, step: Row, fire_at: datetime, now: datetime) -> None:
    version = step.schedule_version + 1
    await repository.update_step(
        conn,
        campaign_id=campaign.id,
        step_index=step.step_index,
        now=now,
        status="scheduled",
        scheduled_at=fire_at,
        schedule_version=version,
    )
    payload = timers_pb2.PlannerTimer(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        step_due=timers_pb2.StepDue(step_index=step.step_index, schedule_version=version),
    )
    timer = scheduler_service_pb2.Timer(
        tenant_id=campaign.tenant_id,
        key=step_timer_key(campaign.id),
        group_key=campaign_group(campaign.id),
        kind="step_due",
        target_subject=Subjects.planner_timer(campaign.tenant_id),
        payload=payload.SerializeToString(),
    )
    timer.fire_at.FromDatetime(fire_at)
    await enqueue(conn, outbox, [_timer_command(campaign.tenant_id, schedule=timer)])


async def schedule_trigger(
    conn: AsyncConnection, *, campaign: Row, message_id_: str, step_index: int, trigger: str, fire_at: datetime
) -> None:
    payload = timers_pb2.PlannerTimer(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        trigger_due=timers_pb2.TriggerDue(message_id=message_id_, step_index=step_index, trigger=trigger),
    )
    timer = scheduler_service_pb2.Timer(
        tenant_id=campaign.tenant_id,
        key=trigger_timer_key(message_id_, trigger),
        group_key=campaign_group(campaign.id),
        kind=trigger,
        target_subject=Subjects.planner_timer(campaign.tenant_id),
        payload=payload.SerializeToString(),
    )
    timer.fire_at.FromDatetime(fire_at)
    await enqueue(conn, outbox, [_timer_command(campaign.tenant_id, schedule=timer)])


async def cancel_timer(conn: AsyncConnection, *, tenant_id: str, key: str) -> None:
    request = scheduler_service_pb2.CancelTimerRequest(tenant_id=tenant_id, key=key)
    await enqueue(conn, outbox, [_timer_command(tenant_id, cancel=request)])


async def end_campaign(conn: AsyncConnection, *, campaign: Row, status: str, reason: str, now: datetime) -> None:
    """Complete or cancel: the remaining steps close and every timer of the campaign goes."""
    await repository.update_campaign(
        conn, campaign_id=campaign.id, now=now, status=status, cancel_reason=reason, ended_at=now
    )
    await repository.close_open_steps(conn, campaign_id=campaign.id, status="canceled", now=now)
    request = scheduler_service_pb2.CancelTimersRequest(
        tenant_id=campaign.tenant_id, group_key=campaign_group(campaign.id)
    )
    await enqueue(conn, outbox, [_timer_command(campaign.tenant_id, cancel_group=request)])


def next_open_step(steps: list[Row], after: int) -> Row | None:
    return next((s for s in steps if s.step_index > after and s.status in ("pending", "scheduled")), None)


def after(moment: datetime, seconds: int) -> datetime:
    return moment + timedelta(seconds=seconds)
