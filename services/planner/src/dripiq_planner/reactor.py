"""What the planner does when timers fire, sends have outcomes, or engagement arrives.

Each handler takes a batch: one transaction locks the campaigns it touches, re-checks their
state before acting (a stale timer or a redelivered fact changes nothing), applies the changes
in memory in arrival order, and writes them back with what they cause in the outbox.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1.messages_pb2 import EngagementEvent
from dripiq.planner.v1 import timers_pb2
from dripiq_common import engagement
from dripiq_common.bus.contract import Subjects, decode
from dripiq_common.clock import Clock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.outbox import OutboxMessage
from dripiq_planner import autoreply, lifecycle, repository, rules, state, templates
from dripiq_planner.state import HELD, RUNNING, CampaignState, CampaignStatus, StepState, StepStatus, UnitOfWork
from dripiq_planner.strategy import AdaptiveRule, RuleAction
from dripiq_planner.tenants import TenantDefaults

log = structlog.get_logger(__name__)


# Which timeouts an engagement makes moot: an open ends "no open in N h", a click proves an
# open too (images may have been blocked), an automatic reply still answers "no reply".
def _contact_window(campaign: CampaignState) -> dispatcher_pb.ContactWindow:
    """The campaign's send window and zone, for the sends the dispatcher has to defer."""
    settings = campaign.settings_json
    window = settings["send_window"]
    return dispatcher_pb.ContactWindow(
        weekdays=window["weekdays"],
        start_hour=window["start_hour"],
        end_hour=window["end_hour"],
        time_zone=settings.get("time_zone") or "UTC",
    )


# A step the dispatcher withheld while the campaign was resuming goes out again this long after.
WITHHELD_RETRY_SECONDS = 60
_SETTLES = {"open": ("open",), "click": ("click", "open"), "reply": ("reply",), "auto_reply": ("reply",)}


def _settled_by(kind: str) -> tuple[str, ...]:
    """The engagement triggers that settle a timeout of this kind ("open" for no_open_48h)."""
    return tuple(trigger for trigger, kinds in _SETTLES.items() if kind in kinds)


def _rules(campaign: CampaignState) -> dict[str, RuleAction]:
    """The campaign's rules over the defaults, parsed once per campaign per batch."""
    cached = campaign.__dict__.get("parsed_rules")
    if cached is None:
        cached = rules.rules_for([AdaptiveRule.model_validate(r) for r in campaign.rules_json])
        campaign.__dict__["parsed_rules"] = cached
    return cached


def _timeout_triggers(campaign: CampaignState) -> list[str]:
    return [t for t in _rules(campaign) if rules.timeout_hours(t)]


@dataclass
class Reactor:
    engine: AsyncEngine
    clock: Clock
    count_machine_opens: bool = False
    # An out-of-office reply never pauses a campaign longer than this.
    max_auto_reply_pause_days: int = 30
    on_commit: Callable[[], None] = field(default=lambda: None)

    async def _run(
        self,
        keys: list[tuple[str, str]],
        apply: Callable[[dict, UnitOfWork, set], None],
        decision_keys: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        """Lock and load the campaigns, let `apply` change them, write it all back."""
        if not keys:
            return
        async with self.engine.begin() as conn:
            campaigns = await state.load(conn, keys)
            already = await state.decided(conn, list(decision_keys))
            work = UnitOfWork(now=self.clock.now())
            apply(campaigns, work, already)
            await state.flush(conn, list(campaigns.values()), work)
        if work.outbox:
            self.on_commit()

    # -- timers ---------------------------------------------------------------------------

    async def on_timer(self, data: bytes) -> None:
        await self.on_timers([data])

    async def on_timers(self, batch: Sequence[bytes]) -> None:
        timers = [decode(timers_pb2.PlannerTimer, data) for data in batch]
        for timer in timers:
            if timer.WhichOneof("kind") is None:
                raise PermanentMessageError("PlannerTimer without a kind")
        # What every send carries of its tenant's settings (postal address, tracking), read once a batch.
        tenants = await self._tenants({t.tenant_id for t in timers if t.HasField("step_due")})

        def apply(campaigns: dict, work: UnitOfWork, already: set) -> None:
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
                elif kind == "step_due":
                    self._step_due(work, campaign, timer.step_due, tenants[campaign.tenant_id])
                elif kind == "trigger_due":
                    self._trigger_due(work, campaign, timer.trigger_due, already)
                else:
                    self._resume_due(work, campaign, timer.resume_due)

        keys = [(t.tenant_id, t.campaign_id) for t in timers]
        decision_keys = [
            (t.tenant_id, t.trigger_due.message_id, settled)
            for t in timers
            if t.HasField("trigger_due") and (timeout := rules.timeout_hours(t.trigger_due.trigger))
            for settled in (*_settled_by(timeout[0]), t.trigger_due.trigger)
        ]
        await self._run(keys, apply, decision_keys)

    def _step_due(
        self, work: UnitOfWork, campaign: CampaignState, due: timers_pb2.StepDue, tenant: TenantDefaults
    ) -> None:
        step = campaign.step(due.step_index)
        if step is None or step.status != StepStatus.SCHEDULED or step.schedule_version != due.schedule_version:
            log.info("timer.stale_step", campaign_id=campaign.id, step_index=due.step_index)
            return
        # A step sent before keeps its id (withheld, then resumed: the dispatcher admits it
        # again); a retried one carries its new id.
        message_id = step.message_id or lifecycle.message_id(campaign.id, step.step_index)
        step.set(status=StepStatus.SENDING, message_id=message_id)
        campaign.set(current_step_index=step.step_index)
        facts = campaign.facts_json
        body = templates.render(step.content, facts)
        if step.call_to_action:
            body = f"{body}\n\n{templates.render(step.call_to_action, facts)}"
        subject, thread = self._thread(campaign, step)
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
            thread_message_ids=thread,
            send_window=_contact_window(campaign),
        )
        work.send(OutboxMessage(Subjects.dispatcher_send(campaign.tenant_id), command))
        log.info(
            "step.send_requested",
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            step_index=step.step_index,
            message_id=message_id,
        )

    @staticmethod
    def _thread(campaign: CampaignState, step: StepState) -> tuple[str, list[str]]:
        """The step's subject, and our ids of the emails it replies to (oldest first).

        A threaded step follows the sent emails back to the one that started the thread and
        takes "Re: <its subject>"; with none of them sent (all skipped), it starts a thread with
        that subject itself.
        """
        facts = campaign.facts_json
        if not step.thread:
            return templates.render(step.subject, facts), []
        chain: list[str] = []
        root = step
        for earlier in reversed([s for s in campaign.steps if s.step_index < step.step_index and s.channel == "email"]):
            if earlier.status == StepStatus.SENT and earlier.message_id:
                chain.append(earlier.message_id)
            root = earlier
            if not earlier.thread:
                break
        subject = templates.render(root.subject, facts)
        return (f"Re: {subject}" if chain else subject), list(reversed(chain))

    def _resume_due(self, work: UnitOfWork, campaign: CampaignState, due: timers_pb2.ResumeDue) -> None:
        if due.pause_version != campaign.pause_version:
            log.info("timer.stale_resume", campaign_id=campaign.id)
            return
        lifecycle.resume(work, campaign)
        log.info("campaign.resumed", tenant_id=campaign.tenant_id, campaign_id=campaign.id, by="timer")

    def _trigger_due(self, work: UnitOfWork, campaign: CampaignState, due: timers_pb2.TriggerDue, already: set) -> None:
        timeout = rules.timeout_hours(due.trigger)
        if timeout is None:
            log.error("timer.not_a_timeout_trigger", trigger=due.trigger)
            return
        if any((campaign.tenant_id, due.message_id, t) in already for t in _settled_by(timeout[0])):
            log.info("trigger.condition_no_longer_holds", campaign_id=campaign.id, trigger=due.trigger)
            return
        self._decide(
            work,
            campaign,
            already,
            message_id=due.message_id,
            step_index=due.step_index,
            trigger=due.trigger,
            source=lifecycle.trigger_timer_key(due.message_id, due.trigger),
        )

    # -- send outcomes --------------------------------------------------------------------

    async def on_outcome(self, data: bytes) -> None:
        await self.on_outcomes([data])

    async def on_outcomes(self, batch: Sequence[bytes]) -> None:
        outcomes = [decode(dispatcher_pb.MessageOutcome, data) for data in batch]

        def apply(campaigns: dict, work: UnitOfWork, already: set) -> None:
            for outcome in outcomes:
                campaign = campaigns.get((outcome.tenant_id, outcome.campaign_id))
                step = campaign.step_for_message(outcome.message_id) if campaign else None
                if campaign is None or step is None or step.status != StepStatus.SENDING:
                    continue
                if outcome.kind == dispatcher_pb.OUTCOME_KIND_SENT:
                    sent_at = (
                        outcome.occurred_at.ToDatetime(tzinfo=UTC) if outcome.HasField("occurred_at") else work.now
                    )
                    untracked = {"open": outcome.opens_untracked_reason, "click": outcome.clicks_untracked_reason}
                    self._sent(work, campaign, step, sent_at, untracked)
                elif outcome.kind == dispatcher_pb.OUTCOME_KIND_WITHHELD:
                    self._withheld(work, campaign, step)
                elif outcome.kind in (dispatcher_pb.OUTCOME_KIND_FAILED, dispatcher_pb.OUTCOME_KIND_SUPPRESSED):
                    self._failed(work, campaign, step, outcome)

        await self._run([(o.tenant_id, o.campaign_id) for o in outcomes], apply)

    def _failed(
        self, work: UnitOfWork, campaign: CampaignState, step: StepState, outcome: dispatcher_pb.MessageOutcome
    ) -> None:
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
            lifecycle.end_campaign(
                work, campaign, status=CampaignStatus.CANCELED, reason=f"send failed: {outcome.reason}"
            )
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

    def _withheld(self, work: UnitOfWork, campaign: CampaignState, step: StepState) -> None:
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

    def _sent(
        self, work: UnitOfWork, campaign: CampaignState, step: StepState, sent_at: datetime, untracked: dict[str, str]
    ) -> None:
        """Schedule what follows a sent step. A timeout on engagement SendGrid cannot report
        (opens with open tracking off) is not armed: it would fire for every contact."""
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
        lifecycle.schedule_step(
            work, campaign, following, due=lifecycle.after(sent_at, following.relative_delay_seconds)
        )
        for trigger in _timeout_triggers(campaign):
            kind, hours = rules.timeout_hours(trigger)  # type: ignore[misc]
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

    # -- engagement -----------------------------------------------------------------------

    async def on_engagement(self, data: bytes) -> None:
        await self.on_engagements([data])

    async def on_engagements(self, batch: Sequence[bytes]) -> None:
        facts = []
        for event in engagement.read_all(batch):
            trigger = rules.trigger_for(event.event_type, event.reason)
            if not event.campaign_id or not event.message_id or trigger is None:
                continue
            if trigger == "open" and event.machine_open and not self.count_machine_opens:
                log.info("engagement.machine_open_ignored", message_id=event.message_id)
                continue
            facts.append((event, trigger))
        tenants = await self._tenants({e.tenant_id for e, t in facts if t == "auto_reply"})

        def apply(campaigns: dict, work: UnitOfWork, already: set) -> None:
            for event, base_trigger in facts:
                campaign = campaigns.get((event.tenant_id, event.campaign_id))
                if campaign is None:
                    continue
                # A classified reply answers to its class's rule when the campaign has one.
                by_class = rules.class_trigger(event.reply_class) if base_trigger == "reply" else None
                trigger = by_class if by_class and by_class in _rules(campaign) else base_trigger
                first_time = self._decide(
                    work,
                    campaign,
                    already,
                    message_id=event.message_id,
                    step_index=event.step_index,
                    trigger=trigger,
                    source=f"event:{event.event_id}",
                    event=event,
                    tenant=tenants.get(event.tenant_id),
                )
                settles = _SETTLES.get(base_trigger, ())
                if first_time and settles:
                    for timeout in _timeout_triggers(campaign):
                        if rules.timeout_hours(timeout)[0] in settles:  # type: ignore[index]
                            lifecycle.cancel_timer(
                                work,
                                tenant_id=campaign.tenant_id,
                                key=lifecycle.trigger_timer_key(event.message_id, timeout),
                            )

        keys = [(e.tenant_id, e.campaign_id) for e, _ in facts]
        decision_keys = [(e.tenant_id, e.message_id, t) for e, t in facts]
        decision_keys += [
            (e.tenant_id, e.message_id, by_class)
            for e, t in facts
            if t == "reply" and (by_class := rules.class_trigger(e.reply_class))
        ]
        await self._run(keys, apply, decision_keys)

    async def _tenants(self, tenant_ids: set[str]) -> dict[str, TenantDefaults]:
        """These tenants' settings, read once for a batch that needs them."""
        if not tenant_ids:
            return {}
        async with self.engine.connect() as conn:
            return await repository.tenant_defaults(conn, tenant_ids=tenant_ids)

    # -- rules ----------------------------------------------------------------------------

    def _decide(
        self,
        work: UnitOfWork,
        campaign: CampaignState,
        already: set,
        *,
        message_id: str,
        step_index: int,
        trigger: str,
        source: str,
        event: EngagementEvent | None = None,
        tenant: TenantDefaults | None = None,
    ) -> bool:
        """Apply the campaign's rule for a trigger, at most once per message and trigger.

        False when this message already had a decision for this trigger.
        """
        key = (campaign.tenant_id, message_id, trigger)
        if key in already:
            log.info("rule.already_applied", campaign_id=campaign.id, message_id=message_id, trigger=trigger)
            return False
        already.add(key)
        action = _rules(campaign).get(trigger)
        ends = action is not None and action.type in ("cancel_campaign", "complete_campaign")
        if campaign.status == CampaignStatus.ACTIVE or (campaign.status in HELD and ends):
            result = "applied" if action else "no rule"
        else:
            # A paused campaign keeps its plan: only what would end it applies.
            result = f"campaign {campaign.status}"
        if action is not None and result == "applied":
            detail = self._apply(
                work, campaign, action, step_index=step_index, trigger=trigger, event=event, tenant=tenant
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

    def _apply(
        self,
        work: UnitOfWork,
        campaign: CampaignState,
        action: RuleAction,
        *,
        step_index: int,
        trigger: str,
        event: EngagementEvent | None,
        tenant: TenantDefaults | None,
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
                return self._pause_until_back(work, campaign, event, tenant or TenantDefaults())
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
        if target is not None:
            lifecycle.schedule_step(work, campaign, target, due=due)
        return ""

    def _pause_until_back(
        self, work: UnitOfWork, campaign: CampaignState, event: EngagementEvent | None, tenant: TenantDefaults
    ) -> str:
        """Pause for an out-of-office reply: until the start of its return day in the contact's
        time zone, or for the tenant's default without a date; never longer than the cap."""
        plan = autoreply.pause_plan(
            return_date=event.return_date if event is not None else "",
            time_zone=campaign.settings_json.get("time_zone") or "UTC",
            now=work.now,
            default_days=tenant.auto_reply_pause_days,
            max_days=self.max_auto_reply_pause_days,
        )
        if plan.resume_at is not None:
            lifecycle.pause(work, campaign, resume_at=plan.resume_at)
        return plan.detail
