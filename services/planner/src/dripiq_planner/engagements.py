"""What engagement facts do to their campaigns, in memory: the trigger each stands for (a
classified reply answers to its class's rule when the campaign has one), that trigger's rule
decided once per message, and the timeouts the engagement settles cancelled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from dripiq.events.v1.messages_pb2 import EngagementEvent
from dripiq_planner import decisions, lifecycle, rules
from dripiq_planner.state import RUNNING, CampaignKey, CampaignState, DecisionKey, UnitOfWork
from dripiq_planner.tenants import TenantDefaults

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Fact:
    """An engagement event and the rules trigger it stands for ("open", "reply", ...)."""

    event: EngagementEvent
    trigger: str


def facts_of(events: Iterable[EngagementEvent], *, count_machine_opens: bool) -> list[Fact]:
    """The events a campaign's rules answer: of one of our messages, standing for a trigger,
    and not an open by a machine (a mail scanner fetching images) unless those count."""
    out = []
    for event in events:
        trigger = rules.trigger_for(event.event_type, event.reason)
        if not event.campaign_id or not event.message_id or trigger is None:
            continue
        if trigger == "open" and event.machine_open and not count_machine_opens:
            log.info("engagement.machine_open_ignored", message_id=event.message_id)
            continue
        out.append(Fact(event, trigger))
    return out


def decision_keys(facts: Sequence[Fact]) -> list[DecisionKey]:
    """The decisions these facts may already have: by their trigger, and a reply by its class."""
    keys = [(f.event.tenant_id, f.event.message_id, f.trigger) for f in facts]
    keys += [
        (f.event.tenant_id, f.event.message_id, by_class)
        for f in facts
        if f.trigger == "reply" and (by_class := rules.class_trigger(f.event.reply_class))
    ]
    return keys


def apply(
    campaigns: Mapping[CampaignKey, CampaignState],
    work: UnitOfWork,
    already: set[DecisionKey],
    *,
    facts: Sequence[Fact],
    tenants: Mapping[str, TenantDefaults],
    max_pause_days: int,
) -> None:
    """Each fact in order; `tenants` has the settings of the tenants with an automatic reply."""
    for fact in facts:
        campaign = campaigns.get((fact.event.tenant_id, fact.event.campaign_id))
        if campaign is not None:
            react(
                work, campaign, already, fact, tenant=tenants.get(fact.event.tenant_id), max_pause_days=max_pause_days
            )


def react(
    work: UnitOfWork,
    campaign: CampaignState,
    already: set[DecisionKey],
    fact: Fact,
    *,
    tenant: TenantDefaults | None,
    max_pause_days: int,
) -> None:
    event = fact.event
    by_class = rules.class_trigger(event.reply_class) if fact.trigger == "reply" else None
    trigger = by_class if by_class and by_class in decisions.campaign_rules(campaign) else fact.trigger
    was_running = campaign.status in RUNNING
    first_time = decisions.decide(
        work,
        campaign,
        already,
        message_id=event.message_id,
        step_index=event.step_index,
        trigger=trigger,
        source=f"event:{event.event_id}",
        return_date=event.return_date,
        tenant=tenant,
        max_pause_days=max_pause_days,
    )
    if fact.trigger == "reply" and was_running and campaign.status not in RUNNING:
        work.ended_by_reply.append(campaign)
    settles = decisions.SETTLES.get(fact.trigger, ())
    if first_time and settles:
        for timeout in decisions.timeout_triggers(campaign):
            if rules.timeout_hours(timeout)[0] in settles:  # type: ignore[index]
                lifecycle.cancel_timer(
                    work,
                    tenant_id=campaign.tenant_id,
                    key=lifecycle.trigger_timer_key(event.message_id, timeout),
                    reason=f"moot: {fact.trigger} came first (event {event.event_id})",
                )
