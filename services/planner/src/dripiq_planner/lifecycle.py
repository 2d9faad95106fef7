"""State changes of a campaign and the timer commands they cause, committed together.

Every async function runs inside the caller's transaction and writes its commands to the
planner's outbox, so a campaign never changes without the scheduler hearing of it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from google.protobuf.message import Message

from dripiq.planner.v1 import facts_pb2, timers_pb2
from dripiq.scheduler.v1 import commands_pb2, scheduler_service_pb2
from dripiq_common import validation, windows
from dripiq_common.bus.contract import Subjects
from dripiq_common.outbox import OutboxMessage
from dripiq_planner import calendars
from dripiq_planner.state import OPEN_STEP_STATUSES, CampaignState, CampaignStatus, StepState, StepStatus, UnitOfWork

MESSAGE_NAMESPACE = uuid.UUID("7b0c7f5e-1d7a-4c55-9d0e-6f4a3c2b1a00")
STRATEGY_GENERATION = 1


class CampaignLike(Protocol):
    """What timers need of a campaign: a stored row, or one about to be inserted."""

    id: str
    tenant_id: str
    settings_json: dict[str, Any]


def message_id(campaign_id: str, step_index: int, generation: int = STRATEGY_GENERATION) -> str:
    """Deterministic, so a redelivered step-due timer can never produce a second message."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{campaign_id}:{step_index}:{generation}"))


def retry_message_id(previous: str) -> str:
    """The id a failed step is sent again under: new (the dispatcher has settled the old one
    as failed) and deterministic (a retried RetryStep call makes no third message)."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{previous}:retry"))


def step_timer_key(campaign_id: str) -> str:
    # Schedule-next: a campaign holds at most one step timer, re-armed for each next step.
    return f"{campaign_id}:step"


def resume_timer_key(campaign_id: str) -> str:
    return f"{campaign_id}:resume"


def trigger_timer_key(message_id_: str, trigger: str) -> str:
    return f"{message_id_}:{trigger}"


def campaign_group(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def after(moment: datetime, seconds: int) -> datetime:
    return moment + timedelta(seconds=seconds)


def resume_after(moment: datetime, seconds: int | None) -> datetime | None:
    """When a pause of `seconds` from `moment` ends by itself; None (0 or unset): it does not."""
    return after(moment, int(seconds)) if seconds and int(seconds) > 0 else None


@dataclass(frozen=True)
class Placement:
    at: datetime
    # Why a holiday moved it ("moved from 2026-12-25 (Christmas Day, US) to 2026-12-28 09:00").
    note: str = ""


def place(
    campaign: CampaignLike,
    due: datetime,
    step_index: int,
    *,
    planned_from: datetime,
    window: dict[str, Any] | None = None,
) -> datetime:
    return placement(campaign, due, step_index, planned_from=planned_from, window=window).at


def placement(
    campaign: CampaignLike,
    due: datetime,
    step_index: int,
    *,
    planned_from: datetime,
    window: dict[str, Any] | None = None,
) -> Placement:
    """When a step due at `due` goes out: inside its send window (`window`, the step's own,
    else the campaign's), on a day none of the campaign's holiday calendars closes, jittered by
    how far ahead of `planned_from` it is."""
    settings = campaign.settings_json
    opens = windows.SendWindow.from_json(window or settings["send_window"])
    zone = ZoneInfo(settings["time_zone"])
    spread = windows.spread_for(int((due - planned_from).total_seconds()))
    seed = f"{campaign.id}:{step_index}"
    at = windows.place(due, opens, zone, seed=seed, spread=spread)
    closed = calendars.closed_days(settings.get("holidays") or ())
    why = closed(at.astimezone(zone).date()) if closed else None
    if closed is None or why is None:
        return Placement(at)
    moved = windows.place(due, opens, zone, seed=seed, spread=spread, closed=closed)
    return Placement(
        moved, f"moved from {at.astimezone(zone):%Y-%m-%d} ({why}) to {moved.astimezone(zone):%Y-%m-%d %H:%M}"
    )


def _timer(
    campaign: CampaignLike, *, key: str, kind: str, fire_at: datetime, payload: Message
) -> scheduler_service_pb2.Timer:
    timer = scheduler_service_pb2.Timer(
        tenant_id=campaign.tenant_id,
        key=key,
        group_key=campaign_group(campaign.id),
        kind=kind,
        target=scheduler_service_pb2.TIMER_TARGET_PLANNER_TIMER,
        payload=payload.SerializeToString(),
    )
    timer.fire_at.FromDatetime(fire_at)
    return timer


def step_timer(
    campaign: CampaignLike, *, step_index: int, version: int, fire_at: datetime
) -> scheduler_service_pb2.Timer:
    payload = timers_pb2.PlannerTimer(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        step_due=timers_pb2.StepDue(step_index=step_index, schedule_version=version),
    )
    return _timer(campaign, key=step_timer_key(campaign.id), kind="step_due", fire_at=fire_at, payload=payload)


def timer_commands(tenant_id: str, batch: list[scheduler_service_pb2.Timer]) -> OutboxMessage:
    """Many timers of one tenant as one command: one outbox row and one upsert."""
    return _command(tenant_id, schedule_batch=commands_pb2.TimerBatch(timers=batch))


def _command(tenant_id: str, **command: Any) -> OutboxMessage:
    return OutboxMessage(
        Subjects.scheduler_command(tenant_id), commands_pb2.TimerCommand(tenant_id=tenant_id, **command)
    )


def schedule_step(work: UnitOfWork, campaign: CampaignState, step: StepState, *, due: datetime) -> datetime:
    """(Re)arm the campaign's step timer for `step`, placed in its send window."""
    placed = placement(campaign, due, step.step_index, planned_from=work.now, window=step.send_window_json)
    return arm_step(work, campaign, step, fire_at=placed.at, note=placed.note)


def arm_step(
    work: UnitOfWork, campaign: CampaignState, step: StepState, *, fire_at: datetime, note: str = ""
) -> datetime:
    """(Re)arm the campaign's step timer for `step` at `fire_at`, already placed; `note` says
    why the placement moved it (a holiday), if it did."""
    version = step.schedule_version + 1
    step.set(status=StepStatus.SCHEDULED, scheduled_at=fire_at, schedule_version=version, placement_note=note)
    timer = step_timer(campaign, step_index=step.step_index, version=version, fire_at=fire_at)
    work.send(_command(campaign.tenant_id, schedule=timer))
    return fire_at


def schedule_trigger(
    work: UnitOfWork, campaign: CampaignState, *, message_id_: str, step_index: int, trigger: str, fire_at: datetime
) -> None:
    payload = timers_pb2.PlannerTimer(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        trigger_due=timers_pb2.TriggerDue(message_id=message_id_, step_index=step_index, trigger=trigger),
    )
    timer = _timer(
        campaign, key=trigger_timer_key(message_id_, trigger), kind=trigger, fire_at=fire_at, payload=payload
    )
    work.send(_command(campaign.tenant_id, schedule=timer))


def cancel_timer(work: UnitOfWork, *, tenant_id: str, key: str, reason: str = "", include_fired: bool = False) -> None:
    """Cancel a timer by key, saying why; `include_fired` also marks one that already fired
    (it arrived when it no longer applied)."""
    request = scheduler_service_pb2.CancelTimerRequest(
        tenant_id=tenant_id, key=key, reason=reason[: validation.MAX_CANCEL_REASON], include_fired=include_fired
    )
    work.send(_command(tenant_id, cancel=request))


def set_status(work: UnitOfWork, campaign: CampaignState, status: str, *, reason: str = "", **values: Any) -> int:
    """Change the campaign's status and tell the dispatcher (CampaignStatusChanged), in the
    same transaction: it sends nothing for a campaign that is not active. The version grows
    with every change, so the newest status wins wherever the facts arrive out of order (it
    also makes the resume timer of an earlier pause stale). Returns the new version."""
    version = campaign.pause_version + 1
    campaign.set(status=status, pause_version=version, **values)
    fact = facts_pb2.CampaignStatusChanged(
        tenant_id=campaign.tenant_id, campaign_id=campaign.id, status=status, version=version, reason=reason
    )
    fact.occurred_at.FromDatetime(work.now)
    work.send(OutboxMessage(Subjects.campaign_status(campaign.tenant_id), fact))
    return version


def end_campaign(work: UnitOfWork, campaign: CampaignState, *, status: str, reason: str) -> None:
    """Complete or cancel: the remaining steps close and every timer of the campaign goes."""
    set_status(work, campaign, status, reason=reason, cancel_reason=reason, ended_at=work.now)
    for step in campaign.steps:
        if step.status in OPEN_STEP_STATUSES:
            step.set(status=StepStatus.CANCELED)
    request = scheduler_service_pb2.CancelTimersRequest(
        tenant_id=campaign.tenant_id, group_key=campaign_group(campaign.id)
    )
    work.send(_command(campaign.tenant_id, cancel_group=request))


def pause(work: UnitOfWork, campaign: CampaignState, *, resume_at: datetime | None) -> None:
    """Stop the step timer; with `resume_at`, arm a timer that resumes by itself then."""
    version = set_status(work, campaign, CampaignStatus.PAUSED)
    cancel_timer(work, tenant_id=campaign.tenant_id, key=step_timer_key(campaign.id))
    if resume_at is not None:
        payload = timers_pb2.PlannerTimer(
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            resume_due=timers_pb2.ResumeDue(pause_version=version),
        )
        timer = _timer(
            campaign,
            key=resume_timer_key(campaign.id),
            kind="resume",
            fire_at=resume_at,
            payload=payload,
        )
        work.send(_command(campaign.tenant_id, schedule=timer))


def needs_attention(work: UnitOfWork, campaign: CampaignState, *, reason: str) -> None:
    """A send failed for a reason outside the message: hold the campaign (no step timer) until
    a person retries the step or resumes it. Rules that end a campaign still apply."""
    set_status(work, campaign, CampaignStatus.NEEDS_ATTENTION, reason=reason, attention_reason=reason)
    cancel_timer(work, tenant_id=campaign.tenant_id, key=step_timer_key(campaign.id))


def retry_failed(work: UnitOfWork, campaign: CampaignState) -> None:
    """Out of needs_attention: each failed step is open again under a new message id, and the
    campaign resumes (the first open step goes out now)."""
    for step in campaign.steps:
        if step.status == StepStatus.FAILED and step.message_id:
            # Due now: the resume below sends it at once (in the send window).
            step.set(status=StepStatus.SCHEDULED, message_id=retry_message_id(step.message_id), scheduled_at=work.now)
    resume(work, campaign)


def resume(work: UnitOfWork, campaign: CampaignState) -> None:
    """Active again: the next open step goes out no earlier than planned, and not before now.
    One paused before its strategy came is planning again: its planning worker starts it."""
    if not campaign.steps and campaign.planned_at is None:
        set_status(work, campaign, CampaignStatus.PLANNING)
        return
    set_status(work, campaign, CampaignStatus.ACTIVE, attention_reason="")
    if any(s.status == StepStatus.SENDING for s in campaign.steps):
        return  # its outcome schedules the next step, now that the campaign is active
    upcoming = campaign.first_open_step()
    if upcoming is None:
        return
    if upcoming.status == StepStatus.SCHEDULED and upcoming.scheduled_at is not None:
        due = max(upcoming.scheduled_at, work.now)
    else:
        due = after(work.now, upcoming.relative_delay_seconds)
    schedule_step(work, campaign, upcoming, due=due)


# -- drafts ---------------------------------------------------------------------------------


def status_when_ready(*, require_approval: bool) -> CampaignStatus:
    """What a campaign whose strategy is ready becomes: active, or a draft when its tenant
    requires approval. Every place a strategy becomes ready asks this one function."""
    return CampaignStatus.DRAFT if require_approval else CampaignStatus.ACTIVE


def strategy_ready(work: UnitOfWork, campaign: CampaignState, *, require_approval: bool) -> None:
    """A stored campaign's strategy is ready: it starts, or waits as a draft whose steps show
    when they would go out if it started now."""
    if status_when_ready(require_approval=require_approval) == CampaignStatus.DRAFT:
        set_status(work, campaign, CampaignStatus.DRAFT)
        plan_draft(campaign, start=work.now)
    else:
        start(work, campaign)


def planned_times(campaign: CampaignLike, delays: list[int], start: datetime) -> list[datetime]:
    """When each step would go out if the campaign started at `start` and nothing intervened."""
    times: list[datetime] = []
    due = start
    for i, delay in enumerate(delays):
        due = place(campaign, after(due, delay), i, planned_from=due)
        times.append(due)
    return times


def plan_draft(campaign: CampaignState, *, start: datetime) -> None:
    """A draft's steps at the times they would go out from `start`; no timer is armed."""
    times = planned_times(campaign, [s.relative_delay_seconds for s in campaign.steps], start)
    for step, when in zip(campaign.steps, times, strict=True):
        if step.status in OPEN_STEP_STATUSES:
            step.set(status=StepStatus.PENDING, scheduled_at=when)


def start(work: UnitOfWork, campaign: CampaignState) -> None:
    """Active, as a created campaign starts: the first open step's timer armed for its planned
    time, or now (in the send window) when that has passed; the later steps wait for
    schedule-next, so their planned times go."""
    set_status(work, campaign, CampaignStatus.ACTIVE)
    first = campaign.first_open_step()
    for step in campaign.steps:
        if step is not first and step.status in OPEN_STEP_STATUSES and step.scheduled_at is not None:
            step.set(status=StepStatus.PENDING, scheduled_at=None)
    if first is None:
        return
    if first.scheduled_at is not None and first.scheduled_at > work.now:
        arm_step(work, campaign, first, fire_at=first.scheduled_at)  # placed when it was planned
    else:
        schedule_step(work, campaign, first, due=work.now)
