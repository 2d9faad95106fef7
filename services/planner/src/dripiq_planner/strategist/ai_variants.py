"""A/B variants the AI strategist writes for a tenant that asks for them (tenant setting
`ai_variants`): what the model is asked for, the schema of its answer, and how its answer
becomes the step's variants.

The names are ours, not the model's: "A" is always the step's own copy and the model writes
only the others ("B", "C"), so a name means the same thing in every campaign of the tenant and
the winners (winners.py), which match variants by name, compare like with like. Weights are
equal. The schema lists only the fields the focus varies, so a subject test cannot come back
with a new body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from dripiq_common.errors import InvalidArgument
from dripiq_planner.strategy import OutreachStep, StepVariant, Strategy, threaded

NAMES = ("A", "B", "C")
MIN_COUNT = 2
MAX_COUNT = len(NAMES)


class VariantFocus(StrEnum):
    """What a step's versions differ in."""

    SUBJECT = "subject"
    CONTENT = "content"
    BOTH = "both"


@dataclass(frozen=True)
class VariantRequest:
    """`count` versions of each email step (the step's own copy is "A"), differing in `focus`."""

    count: int
    focus: VariantFocus = VariantFocus.BOTH

    def __post_init__(self) -> None:
        if not MIN_COUNT <= self.count <= MAX_COUNT:
            raise InvalidArgument("settings.ai_variants", f"must be 0 (off) or {MIN_COUNT} to {MAX_COUNT}")

    @property
    def written(self) -> tuple[str, ...]:
        """The names the model writes: every one but A."""
        return NAMES[1 : self.count]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "focus": self.focus.value}


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


@cache
def variant_model(request: VariantRequest) -> type[BaseModel]:
    """One version as the model writes it: its name and the fields the focus varies."""
    fields: dict[str, Any] = {
        "name": (str, Field(json_schema_extra={"enum": list(request.written)})),
    }
    if request.focus in (VariantFocus.SUBJECT, VariantFocus.BOTH):
        fields["subject"] = (
            str,
            Field(description="another subject line; empty for a follow-up in the previous email's thread"),
        )
    if request.focus in (VariantFocus.CONTENT, VariantFocus.BOTH):
        fields["content"] = (str, Field(description="another body for the same step"))
        fields["call_to_action"] = (str, Field(alias="callToAction"))
    model: type[BaseModel] = create_model(f"AnswerVariant{request.focus.value.title()}", __base__=_Closed, **fields)
    return model


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the model's versions, at a path into its own answer."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _key(text: str) -> str:
    """Copy as a reader tells it apart: case and spacing do not make a new version."""
    return " ".join(text.split()).casefold()


def _own(step: OutreachStep, focus: VariantFocus) -> StepVariant:
    """Version A: the step's own copy, in the fields the focus varies."""
    return StepVariant(
        name=NAMES[0],
        subject=step.subject if focus is not VariantFocus.CONTENT else "",
        content=step.content if focus is not VariantFocus.SUBJECT else "",
        call_to_action=step.call_to_action if focus is not VariantFocus.SUBJECT else "",
    )


def _varied(copy: StepVariant, focus: VariantFocus) -> tuple[str, ...]:
    if focus is VariantFocus.SUBJECT:
        return (_key(copy.subject),)
    if focus is VariantFocus.CONTENT:
        return (_key(copy.content), _key(copy.call_to_action))
    return (_key(copy.subject), _key(copy.content), _key(copy.call_to_action))


def with_variants(
    strategy: Strategy, written: list[list[dict[str, Any]]], request: VariantRequest
) -> tuple[Strategy, list[Problem]]:
    """The strategy with each email step's variants (A, then the model's), and every problem
    with what the model wrote: a wrong count or name, a version that repeats another, versions
    on a step that has none. Paths are the answer's, `outreachCampaign[i].variants[j]`."""
    steps: list[OutreachStep] = []
    problems: list[Problem] = []
    threads = threaded(strategy.outreach_campaign)
    for i, (step, given) in enumerate(zip(strategy.outreach_campaign, written, strict=True)):
        path = f"outreachCampaign[{i}].variants"
        versions = [StepVariant.model_validate(version) for version in given]
        refused = _no_versions(step, threads[i], request.focus)
        if refused:
            if versions:
                problems.append(Problem(path, f"must be empty: {refused}"))
            steps.append(step)
            continue
        names = [version.name for version in versions]
        if names != list(request.written):
            problems.append(
                Problem(
                    path,
                    f"needs {len(request.written)} version(s) named {', '.join(request.written)} in that order, "
                    f"got {', '.join(names) or 'none'}",
                )
            )
        own = _own(step, request.focus)
        earlier = [own]
        for j, version in enumerate(versions):
            if threads[i] and version.subject.strip():
                problems.append(
                    Problem(
                        f"{path}[{j}].subject",
                        "must be empty: a follow-up in the previous email's thread keeps that email's subject",
                    )
                )
            twin = next((e.name for e in earlier if _varied(e, request.focus) == _varied(version, request.focus)), None)
            if twin is not None:
                problems.append(
                    Problem(f"{path}[{j}]", f"repeats version {twin}'s copy; write a clearly different version")
                )
            earlier.append(version)
        steps.append(step.model_copy(update={"variants": [own, *versions]}))
    return strategy.model_copy(update={"outreach_campaign": steps}), problems


def _no_versions(step: OutreachStep, in_thread: bool, focus: VariantFocus) -> str:
    """Why the step gets no versions; empty when it does."""
    if step.type != "email":
        return f"only email steps are tested, this is a {step.type} step"
    if focus is VariantFocus.SUBJECT and in_thread:
        return "a follow-up in the previous email's thread keeps that email's subject"
    return ""


_STORED = re.compile(r"^(outreachCampaign\[\d+\])\.variants\[(\d+)\]")


def answer_path(field: str) -> str:
    """A path into the stored strategy as the model's answer has it: stored variant 0 is A, the
    step's own copy, and the model's versions start at stored variant 1."""
    match = _STORED.match(field)
    if match is None:
        return field
    index = int(match.group(2))
    step = match.group(1)
    rest = field[match.end() :]
    return f"{step}{rest}" if index == 0 else f"{step}.variants[{index - 1}]{rest}"
