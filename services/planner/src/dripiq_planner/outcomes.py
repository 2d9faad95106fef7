"""What the dispatcher's send outcomes do to their campaigns, in memory: a sent step schedules
the next one and arms the campaign's timeouts, a withheld step waits or goes out again, a
failed one (also one SendGrid dropped after it was sent) ends the campaign or holds it for a
person. Any other outcome for a step that is no longer sending (a redelivery) changes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import structlog

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_planner import decisions, identity_resume, lifecycle, rules
from dripiq_planner.state import (
    HELD,
    RUNNING,
    CampaignKey,
    CampaignState,
    CampaignStatus,
    StepState,
    StepStatus,
    UnitOfWork,
)

log = structlog.get_logger(__name__)

# Timeouts on engagement only an email has; a task's step arms only its reply timeouts.
EMAIL_ONLY = frozenset({"open", "click"})
# A step the dispatcher withheld while the campaign was resuming goes out again this long after.
WITHHELD_RETRY_SECONDS = 60


def apply(
    campaigns: Mapping[CampaignKey, CampaignState],
    work: UnitOfWork,
    *,
    outcomes: Sequence[dispatcher_pb.MessageOutcome],
) -> None:
    """Each outcome in order."""
    for outcome in outcomes:
        campaign = campaigns.get((outcome.tenant_id, outcome.campaign_id))
        step = campaign.step_for_message(outcome.message_id) if campaign else None
        if campaign is None or step is None:
            continue
        if outcome.kind == dispatcher_pb.OUTCOME_KIND_RELEASED:
            identity_resume.released(work, campaign, step, outcome)
            continue
        # SendGrid may drop a message it accepted: its FAILED comes after the SENT.
        dropped = outcome.kind == dispatcher_pb.OUTCOME_KIND_FAILED and step.status == StepStatus.SENT
        if step.status != StepStatus.SENDING and not dropped:
            continue
        if outcome.kind == dispatcher_pb.OUTCOME_KIND_SENT:
            sent_at = outcome.occurred_at.ToDatetime(tzinfo=UTC) if outcome.HasField("occurred_at") else work.now
            untracked = {"open": outcome.opens_untracked_reason, "click": outcome.clicks_untracked_reason}
            sent(work, campaign, step, sent_at, untracked)
        elif outcome.kind == dispatcher_pb.OUTCOME_KIND_WITHHELD:
            withheld(work, campaign, step)
        elif outcome.kind in (dispatcher_pb.OUTCOME_KIND_FAILED, dispatcher_pb.OUTCOME_KIND_SUPPRESSED):
            failed(work, campaign, step, outcome)


def sent(
    work: UnitOfWork, campaign: CampaignState, step: StepState, sent_at: datetime, untracked: Mapping[str, str]
) -> None:
    """Schedule what follows a sent step. A timeout on engagement SendGrid cannot report
    (opens with open tracking off) is not armed: it would fire for every contact. `untracked`
    says why, by kind of engagement ("open", "click"). A task (call, LinkedIn) arms no open or
    click timeout at all."""
    step.set(status=StepStatus.SENT, sent_at=sent_at)
    log.info(
        "step.sent",
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        step_index=step.step_index,
        message_id=step.message_id,
    )
    if campaign.status != CampaignStatus.ACTIVE:
        return
    following = campaign.next_open_step(step.step_index)
    if following is None:
        lifecycle.end_campaign(work, campaign, status=CampaignStatus.COMPLETED, reason="")
        return
    lifecycle.schedule_step(work, campaign, following, due=lifecycle.after(sent_at, following.relative_delay_seconds))
    for trigger in decisions.timeout_triggers(campaign):
        kind, hours = rules.timeout_hours(trigger)  # type: ignore[misc]
        if kind in EMAIL_ONLY and step.channel != "email":
            # A call or LinkedIn task is never opened or clicked: the timeout would always fire.
            continue
        if untracked.get(kind):
            work.decide(
                campaign,
                message_id=step.message_id,
                step_index=step.step_index,
                trigger=trigger,
                source="sent",
                rule_json={},
                action="none",
                result=f"not armed: {untracked[kind]}",
            )
            continue
        lifecycle.schedule_trigger(
            work,
            campaign,
            message_id_=step.message_id,
            step_index=step.step_index,
            trigger=trigger,
            fire_at=lifecycle.after(sent_at, hours * 3600),
        )


def withheld(work: UnitOfWork, campaign: CampaignState, step: StepState) -> None:
    """The dispatcher did not send the step: the campaign had stopped when the command came.
    Ended, the step closes; paused, it waits for the resume, which sends it (same message
    id); active again by now (resumed before the dispatcher heard), it goes out shortly."""
    log.info("step.withheld", tenant_id=campaign.tenant_id, campaign_id=campaign.id, step_index=step.step_index)
    if campaign.status == CampaignStatus.ACTIVE:
        lifecycle.schedule_step(work, campaign, step, due=lifecycle.after(work.now, WITHHELD_RETRY_SECONDS))
    elif campaign.status in HELD:
        step.set(status=StepStatus.SCHEDULED, scheduled_at=step.scheduled_at or work.now)
    else:
        step.set(status=StepStatus.CANCELED)


def failed(work: UnitOfWork, campaign: CampaignState, step: StepState, outcome: dispatcher_pb.MessageOutcome) -> None:
    """Only what the message itself can never get past ends the campaign (a suppressed
    contact, an invalid address or content, a sender identity that may not send). Any other
    failure (the provider down past the retry horizon, our account, a send nothing
    confirmed) holds it for a person: needs_attention, then RetryStep or ResumeCampaign."""
    step.set(status=StepStatus.FAILED)
    if campaign.status not in RUNNING:
        return
    if outcome.kind == dispatcher_pb.OUTCOME_KIND_SUPPRESSED:
        lifecycle.end_campaign(work, campaign, status=CampaignStatus.CANCELED, reason="contact suppressed")
    elif outcome.permanent:
        lifecycle.end_campaign(work, campaign, status=CampaignStatus.CANCELED, reason=f"send failed: {outcome.reason}")
    else:
        lifecycle.needs_attention(work, campaign, reason=f"step {step.step_index} failed: {outcome.reason}")
    log.warning(
        "step.failed",
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        step_index=step.step_index,
        campaign_status=campaign.status,
        reason=outcome.reason,
    )
