"""What fired planner timers do to their campaigns, in memory: a due step goes out, a paused
campaign resumes, a timeout trigger ("no_open_48h") gets its rule. A timer that is no longer
current (the campaign stopped, the step rescheduled, the pause ended, the engagement came)
changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from dripiq.planner.v1 import timers_pb2
from dripiq_planner import decisions, lifecycle, rules, sending
from dripiq_planner.state import CampaignKey, CampaignState, CampaignStatus, DecisionKey, StepStatus, UnitOfWork
from dripiq_planner.tenants import TenantDefaults
from dripiq_planner.variants import Winner

log = structlog.get_logger(__name__)


def decision_keys(timers: Sequence[timers_pb2.PlannerTimer]) -> list[DecisionKey]:
    """The decisions that tell whether a timeout still holds: the engagement that settles it,
    and the timeout itself (a redelivered timer)."""
    return [
        (t.tenant_id, t.trigger_due.message_id, settled)
        for t in timers
        if t.HasField("trigger_due") and (timeout := rules.timeout_hours(t.trigger_due.trigger))
        for settled in (*decisions.settled_by(timeout[0]), t.trigger_due.trigger)
    ]


def apply(
    campaigns: Mapping[CampaignKey, CampaignState],
    work: UnitOfWork,
    already: set[DecisionKey],
    *,
    timers: Sequence[timers_pb2.PlannerTimer],
    tenants: Mapping[str, TenantDefaults],
    max_pause_days: int,
    winners: Mapping[tuple[str, str, int], Winner] | None = None,
) -> None:
    """Each timer in order; `tenants` has the settings of every tenant with a step due, and
    `winners` the A/B winners of their experiments (tenant, product, step index) that have one."""
    for timer in timers:
        campaign = campaigns.get((timer.tenant_id, timer.campaign_id))
        kind = timer.WhichOneof("kind")
        expected = CampaignStatus.PAUSED if kind == "resume_due" else CampaignStatus.ACTIVE
        if campaign is None or campaign.status != expected:
            log.info(
                "timer.stale_campaign",
                campaign_id=timer.campaign_id,
                kind=kind,
                status=campaign.status if campaign else "missing",
            )
            if campaign is not None and kind == "trigger_due":
                moot(work, campaign, timer.trigger_due, already, why=f"the campaign is {campaign.status}")
        elif kind == "step_due":
            winner = (winners or {}).get((campaign.tenant_id, campaign.product_id, timer.step_due.step_index))
            step_due(work, campaign, timer.step_due, tenants[campaign.tenant_id], winner)
        elif kind == "trigger_due":
            trigger_due(work, campaign, timer.trigger_due, already, max_pause_days=max_pause_days)
        else:
            resume_due(work, campaign, timer.resume_due)


def step_due(
    work: UnitOfWork,
    campaign: CampaignState,
    due: timers_pb2.StepDue,
    tenant: TenantDefaults,
    winner: Winner | None = None,
) -> None:
    step = campaign.step(due.step_index)
    if step is None or step.status != StepStatus.SCHEDULED or step.schedule_version != due.schedule_version:
        log.info("timer.stale_step", campaign_id=campaign.id, step_index=due.step_index)
        return
    sending.send_step(work, campaign, step, tenant, winner=winner)


def resume_due(work: UnitOfWork, campaign: CampaignState, due: timers_pb2.ResumeDue) -> None:
    if due.pause_version != campaign.pause_version:
        log.info("timer.stale_resume", campaign_id=campaign.id)
        return
    lifecycle.resume(work, campaign)
    log.info("campaign.resumed", tenant_id=campaign.tenant_id, campaign_id=campaign.id, by="timer")


def trigger_due(
    work: UnitOfWork,
    campaign: CampaignState,
    due: timers_pb2.TriggerDue,
    already: set[DecisionKey],
    *,
    max_pause_days: int,
) -> None:
    timeout = rules.timeout_hours(due.trigger)
    if timeout is None:
        log.error("timer.not_a_timeout_trigger", trigger=due.trigger)
        return
    settled = [t for t in decisions.settled_by(timeout[0]) if (campaign.tenant_id, due.message_id, t) in already]
    if settled:
        log.info("trigger.condition_no_longer_holds", campaign_id=campaign.id, trigger=due.trigger)
        moot(work, campaign, due, already, why=f"{settled[0]} came first")
        return
    decisions.decide(
        work,
        campaign,
        already,
        message_id=due.message_id,
        step_index=due.step_index,
        trigger=due.trigger,
        source=lifecycle.trigger_timer_key(due.message_id, due.trigger),
        max_pause_days=max_pause_days,
    )


def moot(
    work: UnitOfWork, campaign: CampaignState, due: timers_pb2.TriggerDue, already: set[DecisionKey], *, why: str
) -> None:
    """A timeout that fired when it no longer applied: canceled as moot in the scheduler (its
    cancel may have lost the race with its firing) and on the timeline, once; nothing else."""
    key = (campaign.tenant_id, due.message_id, due.trigger)
    if key in already:
        return  # a redelivery: said already
    already.add(key)
    reason = f"moot: {why}"
    work.decide(
        campaign,
        message_id=due.message_id,
        step_index=due.step_index,
        trigger=due.trigger,
        source=lifecycle.trigger_timer_key(due.message_id, due.trigger),
        rule_json={},
        action="none",
        result=f"canceled as {reason}",
    )
    lifecycle.cancel_timer(
        work,
        tenant_id=campaign.tenant_id,
        key=lifecycle.trigger_timer_key(due.message_id, due.trigger),
        reason=reason,
        include_fired=True,
    )
