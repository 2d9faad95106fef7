"""A campaign's rule for a trigger, decided at most once per message and carried out on the
campaign in memory: schedule the next step, skip to a step, reschedule, pause, cancel or
complete. Nothing here reads or writes the database; every decision is recorded in the
unit of work, with what it came to."""

from __future__ import annotations

import structlog

from dripiq_planner import autoreply, lifecycle, rules, state
from dripiq_planner.state import HELD, CampaignState, CampaignStatus, DecisionKey, StepStatus, UnitOfWork
from dripiq_planner.strategy import AdaptiveRule, RuleAction
from dripiq_planner.tenants import TenantDefaults

log = structlog.get_logger(__name__)

# Which timeouts an engagement makes moot: an open ends "no open in N h", a click proves an
# open too (images may have been blocked), an automatic reply still answers "no reply".
SETTLES = {"open": ("open",), "click": ("click", "open"), "reply": ("reply",), "auto_reply": ("reply",)}


def settled_by(kind: str) -> tuple[str, ...]:
    """The engagement triggers that settle a timeout of this kind ("open" for no_open_48h)."""
    return tuple(trigger for trigger, kinds in SETTLES.items() if kind in kinds)


def campaign_rules(campaign: CampaignState) -> dict[str, RuleAction]:
    """The campaign's rules over the defaults, parsed once per campaign per batch."""
    cached = campaign.__dict__.get("parsed_rules")
    if cached is None:
        cached = rules.rules_for([AdaptiveRule.model_validate(r) for r in campaign.rules_json])
        campaign.__dict__["parsed_rules"] = cached
    return cached


def timeout_triggers(campaign: CampaignState) -> list[str]:
    """The campaign's timeout triggers ("no_open_48h"), armed after each sent step."""
    return [t for t in campaign_rules(campaign) if rules.timeout_hours(t)]


def decide(
    work: UnitOfWork,
    campaign: CampaignState,
    already: set[DecisionKey],
    *,
    message_id: str,
    step_index: int,
    trigger: str,
    source: str,
    max_pause_days: int,
    return_date: str = "",
    tenant: TenantDefaults | None = None,
) -> bool:
    """Apply the campaign's rule for a trigger, at most once per message and trigger.

    `already` holds the decisions taken before (stored, or earlier in the batch) and gains
    this one. An out-of-office pause uses `return_date` (from the auto-reply), the tenant's
    default pause without one, and never pauses longer than `max_pause_days`.
    False when this message already had a decision for this trigger.
    """
    key = (campaign.tenant_id, message_id, trigger)
    if key in already:
        log.info("rule.already_applied", campaign_id=campaign.id, message_id=message_id, trigger=trigger)
        return False
    already.add(key)
    action = campaign_rules(campaign).get(trigger)
    ends = action is not None and action.type in ("cancel_campaign", "complete_campaign")
    if campaign.status == CampaignStatus.ACTIVE or (campaign.status in HELD and ends):
        result = "applied" if action else "no rule"
    else:
        # A paused campaign keeps its plan: only what would end it applies.
        result = f"campaign {campaign.status}"
    if action is not None and result == "applied":
        detail = _carry_out(
            work,
            campaign,
            action,
            step_index=step_index,
            trigger=trigger,
            return_date=return_date,
            tenant=tenant or TenantDefaults(),
            max_pause_days=max_pause_days,
        )
        result = f"applied: {detail}" if detail else result
        log.info(
            "rule.applied",
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            message_id=message_id,
            trigger=trigger,
            action=action.type,
            detail=detail,
        )
    work.decide(
        campaign,
        message_id=message_id,
        step_index=step_index,
        trigger=trigger,
        source=source,
        rule_json=action.model_dump(mode="json") if action else {},
        action=action.type if action else "none",
        result=result,
    )
    return True


def _carry_out(
    work: UnitOfWork,
    campaign: CampaignState,
    action: RuleAction,
    *,
    step_index: int,
    trigger: str,
    return_date: str,
    tenant: TenantDefaults,
    max_pause_days: int,
) -> str:
    """Carry out one rule's action; what it came to, when there is more to say than its name."""
    if action.type in ("cancel_campaign", "complete_campaign"):
        status = CampaignStatus.CANCELED if action.type == "cancel_campaign" else CampaignStatus.COMPLETED
        lifecycle.end_campaign(work, campaign, status=status, reason=str(action.payload.get("reason") or trigger))
        return ""
    if campaign.status != CampaignStatus.ACTIVE:
        return ""
    if action.type == "pause_campaign":
        if action.payload.get("resumeOnReturnDate"):
            return _pause_until_back(
                work, campaign, return_date=return_date, tenant=tenant, max_pause_days=max_pause_days
            )
        lifecycle.pause(
            work, campaign, resume_at=lifecycle.resume_after(work.now, action.payload.get("resumeAfterSeconds"))
        )
        return ""
    delay = rules.delay_seconds(action, seed=f"{campaign.id}:{step_index}:{trigger}")
    target = campaign.next_open_step(step_index)
    due = lifecycle.after(work.now, delay)
    if action.type == "skip_to_step":
        index = int(action.payload["stepIndex"])
        target = campaign.step(index)
        if target is None or target.status not in state.OPEN_STEP_STATUSES:
            return ""
        for step in campaign.steps:
            if step.step_index < index and step.status in state.OPEN_STEP_STATUSES:
                step.set(status=StepStatus.SKIPPED)
    elif action.type == "reschedule_step" and target is not None:
        due = lifecycle.after(target.scheduled_at or work.now, delay)
    if target is None:
        return ""
    if action.type != "reschedule_step" and target.status == StepStatus.SCHEDULED and target.scheduled_at:
        # Engagement brings a step closer, never pushes it back: a late open must not postpone
        # a step that was already due sooner. Only reschedule_step postpones.
        if target.scheduled_at <= due:
            return f"step {target.step_index} kept at {target.scheduled_at.isoformat()}, sooner than the rule's"
    lifecycle.schedule_step(work, campaign, target, due=due)
    return ""


def _pause_until_back(
    work: UnitOfWork, campaign: CampaignState, *, return_date: str, tenant: TenantDefaults, max_pause_days: int
) -> str:
    """Pause for an out-of-office reply: until the start of its return day in the contact's
    time zone, or for the tenant's default without a date; never longer than the cap."""
    plan = autoreply.pause_plan(
        return_date=return_date,
        time_zone=campaign.settings_json.get("time_zone") or "UTC",
        now=work.now,
        default_days=tenant.auto_reply_pause_days,
        max_days=max_pause_days,
    )
    if plan.resume_at is not None:
        lifecycle.pause(work, campaign, resume_at=plan.resume_at)
    return plan.detail
