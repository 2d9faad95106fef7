"""A person's edit of a step not sent yet: its copy, its A/B variants, timing or channel, checked
as a created campaign's strategy is, re-armed when its timing changed, and kept with who made it.

The step is sent as edited because the send command is built from the stored step when its
timer fires (sending.send_step); the campaign's strategy document is kept in step with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from dripiq.planner.v1 import campaign_service_pb2 as pb
from dripiq_common import validation
from dripiq_common.clock import Clock
from dripiq_common.errors import FailedPrecondition, InvalidArgument, NotFound
from dripiq_planner import convert, lifecycle, repository, rules, state
from dripiq_planner.approval import change_row
from dripiq_planner.campaigns import CampaignService
from dripiq_planner.state import OPEN_STEP_STATUSES, CampaignState, CampaignStatus, StepState, StepStatus, UnitOfWork
from dripiq_planner.strategist.guards import MAX_BODY_CHARS, MAX_SUBJECT_CHARS, check_written_copy
from dripiq_planner.strategy import Strategy, relative_delays, threaded

log = structlog.get_logger(__name__)

# Mask path -> the step's column (and the strategy document's key).
FIELDS = {
    "subject": ("subject", "subject"),
    "content": ("content", "content"),
    "call_to_action": ("call_to_action", "callToAction"),
    "timing": ("timing", "timing"),
    "channel": ("channel", "type"),
    # The whole list is replaced (AIP-134: a repeated field in the mask is replaced, not merged).
    "variants": ("variants", "variants"),
}
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.ACTIVE, CampaignStatus.PAUSED)
_LIMITS = {"subject": MAX_SUBJECT_CHARS, "content": MAX_BODY_CHARS, "call_to_action": MAX_BODY_CHARS}


def check_mask(paths: list[str]) -> list[str]:
    if not paths:
        raise InvalidArgument("update_mask", f"name the fields to change: {', '.join(FIELDS)}")
    if unknown := sorted(set(paths) - set(FIELDS)):
        raise InvalidArgument("update_mask", f"cannot update {', '.join(unknown)}; only {', '.join(FIELDS)}")
    return list(dict.fromkeys(paths))


def check_copy(name: str, text: str, facts: dict[str, Any]) -> None:
    """A person's copy for the step's `name`, checked as guards.check_written_copy says."""
    check_written_copy(f"step.{name}", text, _LIMITS[name], facts)


def check_variants(given: list[pb.StepVariant], facts: dict[str, Any]) -> list[dict[str, Any]]:
    """A person's variants for the step, each one's copy checked as the step's own copy is; the
    contract (count, names, weights) is checked with the strategy. Their JSON form."""
    out = []
    for i, variant in enumerate(given):
        for name in ("subject", "content", "call_to_action"):
            check_written_copy(f"step.variants[{i}].{name}", getattr(variant, name), _LIMITS[name], facts)
        out.append(convert.variant_from_proto(variant).model_dump(by_alias=True, mode="json"))
    return out


def edited_strategy(stored: dict[str, Any], index: int, values: dict[str, Any], paths: list[str]) -> Strategy:
    """The stored strategy with one step changed, checked as a create checks a strategy; an
    error names the request's field (`step.timing`), or the step the change breaks."""
    document = Strategy.model_validate(stored).to_json()
    for path, value in values.items():
        document["outreachCampaign"][index][FIELDS[path][1]] = value
    strategy = Strategy.model_validate(document)
    try:
        rules.validate_strategy(strategy)
    except InvalidArgument as exc:
        raise _about_edit(exc, index, paths) from None
    return strategy


def _about_edit(exc: InvalidArgument, index: int, paths: list[str]) -> InvalidArgument:
    prefix = f"strategy.outreachCampaign[{index}]."
    if exc.field.startswith(prefix):
        key = exc.field.removeprefix(prefix)
        path = next((p for p, (_, k) in FIELDS.items() if k == key), key)
        return InvalidArgument(f"step.{path}", exc.description)
    return InvalidArgument(f"step.{paths[0]}", f"would break {exc.field}: {exc.description}")


@dataclass
class StepEditor:
    engine: AsyncEngine
    clock: Clock
    campaigns: CampaignService
    on_commit: Callable[[], None] = field(default=lambda: None)

    async def update(self, request: pb.UpdateCampaignStepRequest, *, actor: str) -> pb.Campaign:
        tenant = validation.tenant_id(request.tenant_id)
        campaign_id = validation.required(request.campaign_id, "campaign_id")
        paths = check_mask(list(request.update_mask.paths))
        if request.step_index < 0:
            raise InvalidArgument("step_index", "must not be negative")
        async with self.engine.begin() as conn:
            campaign = (await state.load(conn, [(tenant, campaign_id)])).get((tenant, campaign_id))
            if campaign is None:
                raise NotFound(f"campaign {campaign_id!r} not found")
            step = campaign.step(request.step_index)
            if step is None:
                raise NotFound(f"campaign {campaign_id} has no step {request.step_index}")
            if campaign.status not in EDITABLE:
                raise FailedPrecondition(
                    f"campaign {campaign_id} is {campaign.status}: only a draft, active or paused campaign's steps change"
                )
            if step.status not in OPEN_STEP_STATUSES:
                raise FailedPrecondition(
                    f"step {step.step_index} is {step.status}: only a step not sent yet (pending or scheduled) changes"
                )
            values: dict[str, Any] = {
                path: getattr(request.step, FIELDS[path][0]) for path in paths if path != "variants"
            }
            for name in ("subject", "content", "call_to_action"):
                if name in values:
                    check_copy(name, values[name], campaign.facts_json)
            if "variants" in paths:
                values["variants"] = check_variants(list(request.step.variants), campaign.facts_json)
            changed = {p: {"before": getattr(step, FIELDS[p][0]), "after": v} for p, v in values.items()}
            changed = {p: c for p, c in changed.items() if c["before"] != c["after"]}
            if changed:
                stored = await repository.get_strategy(conn, tenant_id=tenant, campaign_id=campaign_id)
                strategy = edited_strategy(stored, step.step_index, values, paths)
                work = UnitOfWork(now=self.clock.now())
                self._apply(work, campaign, step, strategy, values)
                await state.flush(conn, [campaign], work)
                if "variants" in changed:
                    # Apart from the flush: its bulk UPDATE carries no jsonb arrays.
                    await repository.set_step_variants(conn, step_id=step.id, variants=values["variants"])
                await repository.set_strategy(
                    conn, tenant_id=tenant, campaign_id=campaign_id, strategy=strategy.to_json()
                )
                row = change_row(
                    campaign, kind="step_edited", actor=actor, now=work.now, step_index=step.step_index, fields=changed
                )
                await repository.insert_changes(conn, changes=[row])
        if changed:
            self.on_commit()
            log.info(
                "step.edited",
                tenant_id=tenant,
                campaign_id=campaign_id,
                step_index=step.step_index,
                fields=list(changed),
            )
        return await self.campaigns.get(tenant, campaign_id)

    def _apply(
        self, work: UnitOfWork, campaign: CampaignState, step: StepState, strategy: Strategy, values: dict[str, Any]
    ) -> None:
        """Write the values; give every step not sent its delay and thread as the edited
        strategy has them (a "Day N" after a changed step moves too), and move the times."""
        step.set(**{FIELDS[p][0]: v for p, v in values.items() if p != "variants"})
        try:
            delays = relative_delays(strategy, seed=f"{campaign.tenant_id}:{campaign.contact_id}")
        except InvalidArgument as exc:
            raise _about_edit(exc, step.step_index, list(values)) from None
        threads = threaded(strategy.outreach_campaign)
        moved = False
        for other in campaign.steps:
            if other.status not in OPEN_STEP_STATUSES:
                continue
            shift = delays[other.step_index] - other.relative_delay_seconds
            other.set(relative_delay_seconds=delays[other.step_index], thread=threads[other.step_index])
            if not shift:
                continue
            moved = True
            if other.status == StepStatus.SCHEDULED and other.scheduled_at is not None:
                due = max(other.scheduled_at + timedelta(seconds=shift), work.now)
                if campaign.status == CampaignStatus.ACTIVE:
                    lifecycle.schedule_step(work, campaign, other, due=due)  # re-armed: the old timer goes stale
                else:
                    other.set(scheduled_at=due)  # paused: resuming arms it
        if moved and campaign.status == CampaignStatus.DRAFT:
            lifecycle.plan_draft(campaign, start=campaign.created_at)
