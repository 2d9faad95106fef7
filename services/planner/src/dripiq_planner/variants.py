"""A/B variants of a step's copy: how they are checked, which one a contact gets, the copy that
contact is sent, and when one of them has won.

The choice is a weighted pick fixed by a hash of tenant, contact and step: a redelivered timer,
a retried send or a replica asked again picks the same variant, and nothing has to be stored to
keep a contact's variant until the step goes out (it is then recorded on the step). Once an
experiment (tenant, product, step index) has a winner (`decide`, stored by winners.py), every
later contact whose step has a variant by that name gets it instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from dripiq_common.errors import InvalidArgument
from dripiq_common.seeded import seeded_int
from dripiq_planner import templates
from dripiq_planner.strategy import OutreachStep, StepVariant

MIN_VARIANTS = 2
MAX_VARIANTS = 5
MAX_WEIGHT = 1000
MAX_AFTER_SENDS = 1_000_000
MAX_LIFT_PERCENT = 10_000
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class Copy:
    """What one contact is sent for a step."""

    subject: str
    content: str
    call_to_action: str
    variant: str  # empty: the step has one version
    # The experiment's winner this contact got instead of its hash's pick; None: the hash's pick.
    winner: Winner | None = None


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


def copy_for(step: Any, *, tenant_id: str, contact_id: str, winner: Winner | None = None) -> Copy:
    """The copy a stored step sends this contact: the variant already recorded on the step (a
    resent step keeps it), else the experiment's winner when the step has a variant by its name,
    else the one the contact's hash picks; no variants, the step's own."""
    variants = stored(step.variants or [])
    if not variants:
        return Copy(step.subject, step.content, step.call_to_action, "")
    chosen = next((v for v in variants if v.name == step.variant), None)
    won = None
    if chosen is None and winner is not None:
        chosen = won = next((v for v in variants if v.name == winner.variant), None)
    if chosen is None:
        chosen = choose(variants, tenant_id=tenant_id, contact_id=contact_id, step_index=step.step_index)
    return Copy(
        subject=chosen.subject or step.subject,
        content=chosen.content or step.content,
        call_to_action=chosen.call_to_action or step.call_to_action,
        variant=chosen.name,
        winner=winner if won is not None else None,
    )


class Metric(StrEnum):
    """The rate a winner is picked by."""

    REPLY = "reply"
    CLICK = "click"


@dataclass(frozen=True)
class WinnerSetting:
    """A tenant's variant_winner setting: after how many sends of every variant, by which rate,
    and by how much (percent of the runner-up's rate) the best has to lead."""

    after_sends: int
    metric: Metric
    min_lift_percent: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.after_sends <= MAX_AFTER_SENDS:
            raise InvalidArgument("settings.variant_winner.after_sends", f"must be 1 to {MAX_AFTER_SENDS:,}")
        if not 0 <= self.min_lift_percent <= MAX_LIFT_PERCENT:
            raise InvalidArgument("settings.variant_winner.min_lift_percent", f"must be 0 to {MAX_LIFT_PERCENT:,}")

    def to_json(self) -> dict[str, Any]:
        return {"after_sends": self.after_sends, "metric": self.metric.value, "min_lift_percent": self.min_lift_percent}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> WinnerSetting | None:
        if not value:
            return None
        return cls(int(value["after_sends"]), Metric(value["metric"]), int(value.get("min_lift_percent", 0)))


@dataclass(frozen=True)
class Arm:
    """What one variant of an experiment counted so far: its sends, and the sends that replied
    (or were clicked, by the metric)."""

    sent: int
    hits: int

    @property
    def rate(self) -> float:
        return self.hits / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Winner:
    variant: str
    metric: Metric
    rate: float
    runner_up: str
    runner_up_rate: float
    sends_each: int
    decided_at: datetime

    def note(self) -> str:
        """What the timeline says of a step sent as the winner."""
        return (
            f"variant {self.variant}: the winner by {self.metric.value} rate "
            f"({self.rate:.1%} against {self.runner_up_rate:.1%}, after {self.sends_each} sends each)"
        )


def decide(names: Sequence[str], arms: Mapping[str, Arm], setting: WinnerSetting, now: datetime) -> Winner | None:
    """The winner of an experiment whose variants are `names`: once every one of them was sent
    at least `after_sends` times, the one with the best rate, if it leads the runner-up by the
    setting's lift. None while any variant has fewer sends, or no variant leads (a tie, say two
    rates of 0): its contacts keep being split."""
    if len(names) < MIN_VARIANTS:
        return None
    counted = [(name, arms.get(name, Arm(0, 0))) for name in names]
    sends_each = min(arm.sent for _, arm in counted)
    if sends_each < setting.after_sends:
        return None
    # Sorted by rate, then by name so that equal inputs always give the same order.
    ranked = sorted(counted, key=lambda pair: (-pair[1].rate, pair[0]))
    (best, top), (second, runner) = ranked[0], ranked[1]
    if top.rate <= runner.rate or top.rate < runner.rate * (1 + setting.min_lift_percent / 100):
        return None
    return Winner(best, setting.metric, top.rate, second, runner.rate, sends_each, now)
