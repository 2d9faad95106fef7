"""The strategy contract (as the seed defines its JSON) and how step timings become delays."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dripiq_common.errors import InvalidArgument
from dripiq_common.seeded import seeded_int

CHANNELS = ("email", "call", "linkedin")
MAX_STEPS = 20
# The longest a rule or a step may wait: past it a campaign is no longer a conversation.
MAX_DELAY_SECONDS = 90 * 86400


class Cadence(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    interval: str = ""
    total_duration: str = Field("", alias="totalDuration")


class StepVariant(BaseModel):
    """One version of a step's copy in an A/B test; an empty field is the step's (variants.py)."""

    model_config = ConfigDict(populate_by_name=True)
    name: str
    weight: int = 1
    subject: str = ""
    content: str = ""
    call_to_action: str = Field("", alias="callToAction")


class OutreachStep(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    type: str
    timing: str
    subject: str = ""
    content: str = ""
    call_to_action: str = Field("", alias="callToAction")
    # Continue the previous email's thread; None: exactly when the step has no subject.
    thread: bool | None = None
    variants: list[StepVariant] = Field(default_factory=list)
    # The step's own send window, as SendWindow.to_json writes it; None: the campaign's.
    send_window: dict[str, Any] | None = Field(None, alias="sendWindow")


class RuleAction(BaseModel):
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)


class AdaptiveRule(BaseModel):
    trigger: str
    action: RuleAction


class Strategy(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    summary: str = ""
    cadence: Cadence = Field(default_factory=Cadence)
    outreach_campaign: list[OutreachStep] = Field(alias="outreachCampaign")
    adaptive_rules: list[AdaptiveRule] = Field(default_factory=list, alias="adaptiveRules")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def threaded(steps: list[OutreachStep]) -> list[bool]:
    """Whether each step continues the previous email's thread: an email that asks to (or,
    asking nothing, has no subject of its own) and has an earlier email to follow."""
    out: list[bool] = []
    earlier_email = False
    for step in steps:
        wants = step.thread if step.thread is not None else not step.subject.strip()
        out.append(step.type == "email" and wants and earlier_email)
        earlier_email = earlier_email or step.type == "email"
    return out


_DAY = re.compile(r"day\s+(\d{1,3})", re.IGNORECASE)
_SPAN = re.compile(r"(\d{1,4})(?:\s*-\s*(\d{1,4}))?\s*(h|hours?|d|days?|m|minutes?)", re.IGNORECASE)
_ISO = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", re.IGNORECASE)
_UNIT_SECONDS = {"h": 3600, "d": 86400, "m": 60}


def pick_in_range(low: int, high: int, seed: str) -> int:
    """A deterministic choice in [low, high] per contact, so replays plan the same campaign."""
    if high <= low:
        return low
    return low + seeded_int(seed, 8) % (high - low + 1)


def parse_timing(timing: str, *, seed: str) -> tuple[str, int]:
    """("day", N days since the start) or ("after", seconds after the previous step)."""
    text = timing.strip()
    if match := _DAY.fullmatch(text):
        return "day", int(match.group(1)) * 86400
    if match := _SPAN.fullmatch(text):
        unit = _UNIT_SECONDS[match.group(3)[0].lower()]
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise ValueError(f"range {timing!r} ends before it starts")
        return "after", pick_in_range(low * unit, high * unit, seed)
    if (match := _ISO.fullmatch(text)) and any(match.groups()):
        days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return "after", days * 86400 + hours * 3600 + minutes * 60 + seconds
    raise ValueError(f"cannot read timing {timing!r}; use 'Day N', '48h', '2-4 days' or ISO-8601 like 'PT2H'")


def relative_delays(strategy: Strategy, *, seed: str) -> list[int]:
    """Seconds each step waits after the previous one ("Day N" counts from the campaign start)."""
    delays: list[int] = []
    elapsed = 0
    for i, step in enumerate(strategy.outreach_campaign):
        field = f"strategy.outreachCampaign[{i}].timing"
        try:
            kind, seconds = parse_timing(step.timing, seed=f"{seed}:{i}")
        except ValueError as exc:
            raise InvalidArgument(field, str(exc)) from None
        delay = seconds - elapsed if kind == "day" else seconds
        if delay < 0:
            raise InvalidArgument(field, f"{step.timing!r} comes before the previous step")
        if delay > MAX_DELAY_SECONDS:
            raise InvalidArgument(field, f"{step.timing!r} waits more than 90 days after the previous step")
        delays.append(delay)
        elapsed += delay
    return delays
