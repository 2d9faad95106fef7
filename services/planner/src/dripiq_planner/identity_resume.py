"""Campaigns held because their sender identity was not verified go on by themselves once the
dispatcher verifies it again: its RELEASED outcome names the message that failed, and the
campaign still waiting on exactly that failure retries the step, as RetryStep would (under the
retry's deterministic message id, so a redelivered outcome finds the step moved on and sends
nothing twice). A campaign held for another reason, one a person already retried, paused or
canceled meanwhile is left as it is."""

from __future__ import annotations

import structlog

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_planner import lifecycle
from dripiq_planner.state import CampaignState, CampaignStatus, StepState, StepStatus, UnitOfWork

log = structlog.get_logger(__name__)

# The timeline's entry: "sender_identity_verified -> retry_step: sender identity <id> verified again".
TRIGGER = "sender_identity_verified"


def released(work: UnitOfWork, campaign: CampaignState, step: StepState, outcome: dispatcher_pb.MessageOutcome) -> None:
    ids = {"tenant_id": campaign.tenant_id, "campaign_id": campaign.id, "message_id": outcome.message_id}
    if campaign.status != CampaignStatus.NEEDS_ATTENTION or step.status != StepStatus.FAILED:
        log.info(
            "campaign.release_left_alone", campaign_status=str(campaign.status), step_status=str(step.status), **ids
        )
        return
    work.decide(
        campaign,
        message_id=outcome.message_id,
        step_index=step.step_index,
        trigger=TRIGGER,
        source="dispatcher",
        rule_json={},
        action="retry_step",
        result=outcome.reason or f"sender identity {outcome.sender_identity_id} verified again",
    )
    lifecycle.retry_failed(work, campaign)
    log.info("campaign.resumed_after_identity_verified", sender_identity_id=outcome.sender_identity_id, **ids)
