"""A/B variants of a step's copy: how they are checked, which one a contact gets, and the copy
that contact is sent.

The choice is a weighted pick fixed by a hash of tenant, contact and step: a redelivered timer,
a retried send or a replica asked again picks the same variant, and nothing has to be stored to
keep a contact's variant until the step goes out (it is then recorded on the step).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dripiq_common.errors import InvalidArgument
from dripiq_common.seeded import seeded_int
from dripiq_planner import templates
from dripiq_planner.strategy import OutreachStep, StepVariant

MIN_VARIANTS = 2
MAX_VARIANTS = 5
MAX_WEIGHT = 1000
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class Copy:
    """What one contact is sent for a step."""

    subject: str
    content: str
    call_to_action: str
    variant: str  # empty: the step has one version


def validate(step: OutreachStep, index: int) -> None:
    """The step's variants as the contract wants them; InvalidArgument names the field."""
    if not step.variants:
        return
    path = f"strategy.outreachCampaign[{index}].variants"
    if not MIN_VARIANTS <= len(step.variants) <= MAX_VARIANTS:
        raise InvalidArgument(path, f"needs {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(step.variants)}")
    seen: set[str] = set()
    for i, variant in enumerate(step.variants):
        field = f"{path}[{i}]"
        if not _NAME.fullmatch(variant.name):
            raise InvalidArgument(f"{field}.name", "must be 1 to 32 letters, digits, '-' or '_' (e.g. 'A')")
        if variant.name in seen:
            raise InvalidArgument(f"{field}.name", f"{variant.name!r} names another variant of the step too")
        seen.add(variant.name)
        if not 1 <= variant.weight <= MAX_WEIGHT:
            raise InvalidArgument(f"{field}.weight", f"must be 1 to {MAX_WEIGHT}, got {variant.weight}")
        if not (variant.subject.strip() or variant.content.strip() or variant.call_to_action.strip()):
            raise InvalidArgument(field, "changes nothing: give a subject, content or callToAction")
        _check_copy(variant, field)


def _check_copy(variant: StepVariant, field: str) -> None:
    """The bounds AI copy is held to, and no placeholder left but the {{fact}} ones rendered at
    send time: a variant goes out to real contacts as written."""
    # Imported here: the guards check whole strategies through the rules, which check variants.
    from dripiq_planner.strategist.guards import MAX_BODY_CHARS, MAX_SUBJECT_CHARS, check_written_copy

    for name, text, limit in (
        ("subject", variant.subject, MAX_SUBJECT_CHARS),
        ("content", variant.content, MAX_BODY_CHARS),
        ("callToAction", variant.call_to_action, MAX_BODY_CHARS),
    ):
        check_written_copy(f"{field}.{name}", text, limit, templates.FIELDS)


def choose(variants: Sequence[StepVariant], *, tenant_id: str, contact_id: str, step_index: int) -> StepVariant:
    """The variant a contact gets: each with a share of contacts proportional to its weight."""
    total = sum(v.weight for v in variants)
    point = seeded_int(f"variant:{tenant_id}:{contact_id}:{step_index}") % total
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("weights are positive, so the point falls in one of them")


def stored(variants: Sequence[dict[str, Any]]) -> list[StepVariant]:
    """A step's variants as campaign_steps.variants keeps them (the strategy's JSON form)."""
    return [StepVariant.model_validate(v) for v in variants]


def to_json(step: OutreachStep) -> list[dict[str, Any]]:
    return [v.model_dump(by_alias=True, mode="json") for v in step.variants]


def copy_for(step: Any, *, tenant_id: str, contact_id: str) -> Copy:
    """The copy a stored step sends this contact: the variant already recorded on the step (a
    resent step keeps it), else the one the contact's hash picks; no variants, the step's own."""
    variants = stored(step.variants or [])
    if not variants:
        return Copy(step.subject, step.content, step.call_to_action, "")
    chosen = next((v for v in variants if v.name == step.variant), None) or choose(
        variants, tenant_id=tenant_id, contact_id=contact_id, step_index=step.step_index
    )
    return Copy(
        subject=chosen.subject or step.subject,
        content=chosen.content or step.content,
        call_to_action=chosen.call_to_action or step.call_to_action,
        variant=chosen.name,
    )
