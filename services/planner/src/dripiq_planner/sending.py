"""A due step going out: its message id, its text rendered from the campaign's facts, its
thread, and the SendMessageCommand that asks the dispatcher to send it."""

from __future__ import annotations

import structlog

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq_common.bus.contract import Subjects
from dripiq_common.outbox import OutboxMessage
from dripiq_planner import lifecycle, templates, variants
from dripiq_planner.state import CampaignState, StepState, StepStatus, UnitOfWork
from dripiq_planner.tenants import TenantDefaults
from dripiq_planner.variants import Winner

log = structlog.get_logger(__name__)


def send_step(
    work: UnitOfWork, campaign: CampaignState, step: StepState, tenant: TenantDefaults, *, winner: Winner | None = None
) -> None:
    """Mark the step sending and outbox its send command, carrying the tenant's postal address
    and tracking as they are now; a step with variants sends the experiment's `winner` when it
    has one by that name."""
    # A step sent before keeps its id (withheld, then resumed: the dispatcher admits it
    # again); a retried one carries its new id.
    message_id = step.message_id or lifecycle.message_id(campaign.id, step.step_index)
    step.set(status=StepStatus.SENDING, message_id=message_id)
    campaign.set(current_step_index=step.step_index)
    facts = campaign.facts_json
    copy = variants.copy_for(step, tenant_id=campaign.tenant_id, contact_id=campaign.contact_id, winner=winner)
    if copy.variant:
        step.set(variant=copy.variant)
    if copy.winner is not None:
        # Why this contact got it, on the timeline; once per message, as every decision.
        work.decide(
            campaign,
            message_id=message_id,
            step_index=step.step_index,
            trigger="variant_winner",
            source=f"variant_winners:{campaign.product_id}:{step.step_index}",
            rule_json={"metric": copy.winner.metric.value, "sends_each": copy.winner.sends_each},
            action="send_variant",
            result=copy.winner.note(),
        )
    body = templates.render(copy.content, facts)
    if copy.call_to_action:
        body = f"{body}\n\n{templates.render(copy.call_to_action, facts)}"
    subject, thread_ids = thread(campaign, step)
    command = dispatcher_pb.SendMessageCommand(
        tenant_id=campaign.tenant_id,
        message_id=message_id,
        campaign_id=campaign.id,
        step_index=step.step_index,
        contact_id=campaign.contact_id,
        channel=step.channel,
        to_email=facts["email"],
        to_name=" ".join(p for p in (facts.get("first_name"), facts.get("last_name")) if p),
        sender_identity_id=campaign.sender_identity_id,
        subject=subject,
        body_text=body,
        categories=[f"campaign-step-{step.step_index}"],
        postal_address=tenant.postal_address,
        tracking=tenant.tracking(),
        thread_message_ids=thread_ids,
        send_window=contact_window(campaign, step),
        holiday_calendars=campaign.settings_json.get("holidays") or [],
        product_id=campaign.product_id,
        strategist=campaign.strategist,
        variant=copy.variant,
    )
    work.send(OutboxMessage(Subjects.dispatcher_send(campaign.tenant_id), command))
    log.info(
        "step.send_requested",
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        step_index=step.step_index,
        message_id=message_id,
        variant=copy.variant,
    )


def thread(campaign: CampaignState, step: StepState) -> tuple[str, list[str]]:
    """The step's subject, and our ids of the emails it replies to (oldest first).

    A threaded step follows the sent emails back to the one that started the thread and
    takes "Re: <its subject>"; with none of them sent (all skipped), it starts a thread with
    that subject itself.
    """
    facts = campaign.facts_json
    if not step.thread:
        return templates.render(_subject(campaign, step), facts), []
    chain: list[str] = []
    root = step
    for earlier in reversed([s for s in campaign.steps if s.step_index < step.step_index and s.channel == "email"]):
        if earlier.status == StepStatus.SENT and earlier.message_id:
            chain.append(earlier.message_id)
        root = earlier
        if not earlier.thread:
            break
    subject = templates.render(_subject(campaign, root), facts)
    return (f"Re: {subject}" if chain else subject), list(reversed(chain))


def _subject(campaign: CampaignState, step: StepState) -> str:
    """The subject the contact got (or gets) for the step: its variant's, if it has variants."""
    return variants.copy_for(step, tenant_id=campaign.tenant_id, contact_id=campaign.contact_id).subject


def contact_window(campaign: CampaignState, step: StepState) -> dispatcher_pb.ContactWindow:
    """The step's send window (its own, else the campaign's) and the contact's zone, for the
    sends the dispatcher has to defer."""
    settings = campaign.settings_json
    window = step.send_window_json or settings["send_window"]
    return dispatcher_pb.ContactWindow(
        weekdays=window["weekdays"],
        start_hour=window["start_hour"],
        end_hour=window["end_hour"],
        time_zone=settings.get("time_zone") or "UTC",
    )
