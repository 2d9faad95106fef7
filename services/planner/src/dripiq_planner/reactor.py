"""What the planner does when a timer fires, a send has an outcome, or engagement arrives.

Each handler runs in one transaction with the campaign row locked, re-checks state before it
acts (a stale timer or a redelivered fact changes nothing), and outboxes what it causes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dripiq.dispatcher.v1 import messages_pb2 as dispatcher_pb
from dripiq.events.v1 import messages_pb2 as events_pb
from dripiq.planner.v1 import timers_pb2
from dripiq_common.clock import Clock
from dripiq_common.errors import PermanentMessageError
from dripiq_common.jetstream import Subjects, decode
from dripiq_common.outbox import OutboxMessage, enqueue
from dripiq_planner import lifecycle, repository, rules, templates
from dripiq_planner.models import outbox
from dripiq_planner.strategy import AdaptiveRule, RuleAction

log = structlog.get_logger(__name__)

# Which timeouts an engagement makes moot: an open ends "no open in N h", and so on.
_SETTLES = {"open": "open", "click": "click", "reply": "reply", "auto_reply": "reply"}


def _rules(campaign: Row) -> dict[str, RuleAction]:
    return rules.rules_for([AdaptiveRule.model_validate(r) for r in campaign.rules_json])


def _timeout_triggers(campaign: Row) -> list[str]:
    return [t for t in _rules(campaign) if rules.timeout_hours(t)]


@dataclass
class Reactor:
    engine: AsyncEngine
    clock: Clock
    count_machine_opens: bool = False
    on_commit: Callable[[], None] = field(default=lambda: None)

    async def _locked(self, conn: AsyncConnection, tenant_id: str, campaign_id: str) -> Row | None:
        return await repository.get_campaign(conn, tenant_id=tenant_id, campaign_id=campaign_id, for_update=True)

    # -- timers ---------------------------------------------------------------------------

    async def on_timer(self, data: bytes) -> None:
        timer = decode(timers_pb2.PlannerTimer, data)
        async with self.engine.begin() as conn:
            campaign = await self._locked(conn, timer.tenant_id, timer.campaign_id)
            expected = "paused" if timer.WhichOneof("kind") == "resume_due" else "active"
            if campaign is None or campaign.status != expected:
                log.info(
                    "timer.stale_campaign",
                    campaign_id=timer.campaign_id,
                    status=campaign.status if campaign else "missing",
                )
                return
            kind = timer.WhichOneof("kind")
            if kind == "step_due":
                await self._step_due(conn, campaign, timer.step_due)
            elif kind == "trigger_due":
                await self._trigger_due(conn, campaign, timer.trigger_due)
            elif kind == "resume_due":
                await self._resume_due(conn, campaign, timer.resume_due)
            else:
                raise PermanentMessageError("PlannerTimer without a kind")
        self.on_commit()

    async def _step_due(self, conn: AsyncConnection, campaign: Row, due: timers_pb2.StepDue) -> None:
        steps = await repository.get_steps(conn, campaign_id=campaign.id)
        step = next((s for s in steps if s.step_index == due.step_index), None)
        if step is None or step.status != "scheduled" or step.schedule_version != due.schedule_version:
            log.info("timer.stale_step", campaign_id=campaign.id, step_index=due.step_index)
            return
        now = self.clock.now()
        message_id = lifecycle.message_id(campaign.id, step.step_index)
        await repository.update_step(
            conn, campaign_id=campaign.id, step_index=step.step_index, now=now, status="sending", message_id=message_id
        )
        await repository.update_campaign(conn, campaign_id=campaign.id, now=now, current_step_index=step.step_index)
        facts = campaign.facts_json
        body = templates.render(step.content, facts)
        if step.call_to_action:
            body = f"{body}\n\n{templates.render(step.call_to_action, facts)}"
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
            subject=templates.render(step.subject, facts),
            body_text=body,
            categories=[f"campaign-step-{step.step_index}"],
        )
        await enqueue(conn, outbox, [OutboxMessage(Subjects.dispatcher_send(campaign.tenant_id), command)])
        log.info(
            "step.send_requested",
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            step_index=step.step_index,
            message_id=message_id,
        )

    async def _resume_due(self, conn: AsyncConnection, campaign: Row, due: timers_pb2.ResumeDue) -> None:
        if due.pause_version != campaign.pause_version:
            log.info("timer.stale_resume", campaign_id=campaign.id)
            return
        await lifecycle.resume(conn, campaign=campaign, now=self.clock.now())
        log.info("campaign.resumed", tenant_id=campaign.tenant_id, campaign_id=campaign.id, by="timer")

    async def _trigger_due(self, conn: AsyncConnection, campaign: Row, due: timers_pb2.TriggerDue) -> None:
        timeout = rules.timeout_hours(due.trigger)
        if timeout is None:
            raise PermanentMessageError(f"not a timeout trigger: {due.trigger!r}")
        settled_by, _hours = timeout
        if await repository.has_decision(
            conn, tenant_id=campaign.tenant_id, message_id=due.message_id, triggers=(settled_by,)
        ):
            log.info("trigger.condition_no_longer_holds", campaign_id=campaign.id, trigger=due.trigger)
            return
        await self._decide(
            conn,
            campaign,
            message_id=due.message_id,
            step_index=due.step_index,
            trigger=due.trigger,
            source=lifecycle.trigger_timer_key(due.message_id, due.trigger),
        )

    # -- send outcomes --------------------------------------------------------------------

    async def on_outcome(self, data: bytes) -> None:
        outcome = decode(dispatcher_pb.MessageOutcome, data)
        async with self.engine.begin() as conn:
            campaign = await self._locked(conn, outcome.tenant_id, outcome.campaign_id)
            if campaign is None:
                return
            steps = await repository.get_steps(conn, campaign_id=campaign.id)
            step = next((s for s in steps if s.message_id == outcome.message_id), None)
            if step is None or step.status != "sending":
                return
            now = self.clock.now()
            if outcome.kind == dispatcher_pb.OUTCOME_KIND_SENT:
                sent_at = outcome.occurred_at.ToDatetime(tzinfo=UTC) if outcome.HasField("occurred_at") else now
                await self._sent(conn, campaign, steps, step, sent_at, now)
            elif outcome.kind in (dispatcher_pb.OUTCOME_KIND_FAILED, dispatcher_pb.OUTCOME_KIND_SUPPRESSED):
                status = "failed"
                reason = (
                    "contact suppressed"
                    if outcome.kind == dispatcher_pb.OUTCOME_KIND_SUPPRESSED
                    else f"send failed: {outcome.reason}"
                )
                await repository.update_step(
                    conn, campaign_id=campaign.id, step_index=step.step_index, now=now, status=status
                )
                if campaign.status in repository.RUNNING:
                    await lifecycle.end_campaign(conn, campaign=campaign, status="canceled", reason=reason, now=now)
            else:
                return
        self.on_commit()

    async def _sent(
        self, conn: AsyncConnection, campaign: Row, steps: list[Row], step: Row, sent_at: datetime, now: datetime
    ) -> None:
        await repository.update_step(
            conn, campaign_id=campaign.id, step_index=step.step_index, now=now, status="sent", sent_at=sent_at
        )
        log.info(
            "step.sent",
            tenant_id=campaign.tenant_id,
            campaign_id=campaign.id,
            step_index=step.step_index,
            message_id=step.message_id,
        )
        if campaign.status != "active":
            return
        following = lifecycle.next_open_step(steps, step.step_index)
        if following is None:
            await lifecycle.end_campaign(conn, campaign=campaign, status="completed", reason="", now=now)
            return
        await lifecycle.schedule_step(
            conn,
            campaign=campaign,
            step=following,
            due=lifecycle.after(sent_at, following.relative_delay_seconds),
            now=now,
        )
        for trigger in _timeout_triggers(campaign):
            _kind, hours = rules.timeout_hours(trigger)  # type: ignore[misc]
            await lifecycle.schedule_trigger(
                conn,
                campaign=campaign,
                message_id_=step.message_id,
                step_index=step.step_index,
                trigger=trigger,
                fire_at=lifecycle.after(sent_at, hours * 3600),
            )

    # -- engagement -----------------------------------------------------------------------

    async def on_engagement(self, data: bytes) -> None:
        event = decode(events_pb.EngagementEvent, data)
        if not event.campaign_id or not event.message_id:
            return
        trigger = rules.trigger_for(event.event_type, event.reason)
        if trigger is None:
            return
        if trigger == "open" and event.machine_open and not self.count_machine_opens:
            log.info("engagement.machine_open_ignored", message_id=event.message_id)
            return
        async with self.engine.begin() as conn:
            campaign = await self._locked(conn, event.tenant_id, event.campaign_id)
            if campaign is None:
                return
            first_time = await self._decide(
                conn,
                campaign,
                message_id=event.message_id,
                step_index=event.step_index,
                trigger=trigger,
                source=f"event:{event.event_id}",
            )
            settles = _SETTLES.get(trigger)
            if first_time and settles:
                for trigger in _timeout_triggers(campaign):
                    if rules.timeout_hours(trigger)[0] == settles:  # type: ignore[index]
                        await lifecycle.cancel_timer(
                            conn,
                            tenant_id=campaign.tenant_id,
                            key=lifecycle.trigger_timer_key(event.message_id, trigger),
                        )
        self.on_commit()

    # -- rules ----------------------------------------------------------------------------

    async def _decide(
        self, conn: AsyncConnection, campaign: Row, *, message_id: str, step_index: int, trigger: str, source: str
    ) -> bool:
        """Apply the campaign's rule for a trigger, at most once per message and trigger.

        False when this message already had a decision for this trigger.
        """
        action = _rules(campaign).get(trigger)
        running = campaign.status in repository.RUNNING
        result = "applied" if action and running else ("no rule" if running else f"campaign {campaign.status}")
        recorded = await repository.record_decision(
            conn,
            values={
                "tenant_id": campaign.tenant_id,
                "campaign_id": campaign.id,
                "message_id": message_id,
                "step_index": step_index,
                "trigger": trigger,
                "source": source,
                "rule_json": action.model_dump(mode="json") if action else {},
                "action": action.type if action else "none",
                "result": result,
            },
        )
        if not recorded:
            log.info("rule.already_applied", campaign_id=campaign.id, message_id=message_id, trigger=trigger)
            return False
        if action is not None and result == "applied":
            await self._apply(conn, campaign, action, step_index=step_index, trigger=trigger)
            log.info(
                "rule.applied",
                tenant_id=campaign.tenant_id,
                campaign_id=campaign.id,
                message_id=message_id,
                trigger=trigger,
                action=action.type,
            )
        return True

    async def _apply(
        self, conn: AsyncConnection, campaign: Row, action: RuleAction, *, step_index: int, trigger: str
    ) -> None:
        now = self.clock.now()
        seed = f"{campaign.id}:{step_index}:{trigger}"
        if action.type in ("cancel_campaign", "complete_campaign"):
            status = "canceled" if action.type == "cancel_campaign" else "completed"
            reason = str(action.payload.get("reason") or trigger)
            await lifecycle.end_campaign(conn, campaign=campaign, status=status, reason=reason, now=now)
            return
        if campaign.status != "active":
            return
        if action.type == "pause_campaign":
            resume_after = int(action.payload.get("resumeAfterSeconds") or 0)
            await lifecycle.pause(conn, campaign=campaign, resume_after_seconds=resume_after, now=now)
            return
        steps = await repository.get_steps(conn, campaign_id=campaign.id)
        delay = rules.delay_seconds(action, seed=seed)
        target = lifecycle.next_open_step(steps, step_index)
        due = lifecycle.after(now, delay)
        if action.type == "skip_to_step":
            index = int(action.payload["stepIndex"])
            target = next((s for s in steps if s.step_index == index and s.status in ("pending", "scheduled")), None)
            if target is not None:
                await repository.close_open_steps(conn, campaign_id=campaign.id, status="skipped", now=now, below=index)
        elif action.type == "reschedule_step" and target is not None:
            due = lifecycle.after(target.scheduled_at or now, delay)
        if target is not None:
            await lifecycle.schedule_step(conn, campaign=campaign, step=target, due=due, now=now)
