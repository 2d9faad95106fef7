"""The adaptive rules engine's vocabulary: triggers, actions, and the system defaults."""

from __future__ import annotations

import re
from typing import TypeGuard

from dripiq_common.errors import InvalidArgument
from dripiq_common.windows import DEFAULT_WINDOW, SendWindow
from dripiq_planner import templates, variants
from dripiq_planner.strategy import (
    CHANNELS,
    MAX_DELAY_SECONDS,
    MAX_STEPS,
    AdaptiveRule,
    OutreachStep,
    RuleAction,
    StepVariant,
    Strategy,
    pick_in_range,
    threaded,
)

ENGAGEMENT_TRIGGERS = frozenset(
    {"open", "click", "reply", "auto_reply", "unsubscribe", "bounce", "spamreport", "dropped", "delivered"}
)
TIMEOUT_TRIGGER = re.compile(r"no_(open|click|reply)_(\d{1,4})h")
# What a person's reply says (the events service classifies it): "reply:not_interested".
REPLY_CLASSES = ("interested", "not_interested", "referral", "unsubscribe_request", "question", "other")
CLASS_TRIGGER = re.compile(rf"reply:({'|'.join(REPLY_CLASSES)})")
ACTIONS = frozenset(
    {"schedule_next_step", "skip_to_step", "reschedule_step", "cancel_campaign", "complete_campaign", "pause_campaign"}
)
DAY = 86400

# The defaults when a strategy brings no rule for a trigger.
DEFAULT_RULES: dict[str, RuleAction] = {
    "open": RuleAction(type="schedule_next_step", payload={"delaySeconds": [DAY, 2 * DAY]}),
    "click": RuleAction(type="schedule_next_step", payload={"delaySeconds": 3600}),
    "reply": RuleAction(type="cancel_campaign", payload={"reason": "reply"}),
    "unsubscribe": RuleAction(type="cancel_campaign", payload={"reason": "unsubscribe"}),
    "bounce": RuleAction(type="cancel_campaign", payload={"reason": "bounce"}),
    "spamreport": RuleAction(type="cancel_campaign", payload={"reason": "spamreport"}),
    # The dispatcher suppresses the address too; the campaign stops whatever its reply rule says.
    "reply:unsubscribe_request": RuleAction(type="cancel_campaign", payload={"reason": "unsubscribe request by reply"}),
    # Out of office: wait until they are back (the date the auto-reply gives, else the tenant's default).
    "auto_reply": RuleAction(type="pause_campaign", payload={"resumeOnReturnDate": True}),
    "no_open_48h": RuleAction(type="reschedule_step", payload={"delaySeconds": DAY}),
}


def trigger_for(event_type: str, reason: str = "") -> str | None:
    """The rules trigger an engagement event stands for, or None when it stands for none."""
    if event_type == "bounce" and reason == "blocked":
        return None  # a soft bounce: the address still exists
    if event_type == "group_unsubscribe":
        return "unsubscribe"
    return event_type if event_type in ENGAGEMENT_TRIGGERS else None


def is_trigger(name: str) -> bool:
    return name in ENGAGEMENT_TRIGGERS or bool(TIMEOUT_TRIGGER.fullmatch(name) or CLASS_TRIGGER.fullmatch(name))


def class_trigger(reply_class: str) -> str | None:
    """ "reply:<class>" for a classified reply, None for an unknown or missing class."""
    trigger = f"reply:{reply_class}"
    return trigger if CLASS_TRIGGER.fullmatch(trigger) else None


def timeout_hours(trigger: str) -> tuple[str, int] | None:
    """("open", 48) for "no_open_48h"."""
    match = TIMEOUT_TRIGGER.fullmatch(trigger)
    return (match.group(1), int(match.group(2))) if match else None


def validate_rule(rule: AdaptiveRule, *, index: int, step_count: int) -> None:
    field = f"strategy.adaptiveRules[{index}]"
    if not is_trigger(rule.trigger):
        raise InvalidArgument(f"{field}.trigger", f"unknown trigger {rule.trigger!r}")
    if (timeout := timeout_hours(rule.trigger)) and timeout[1] * 3600 > MAX_DELAY_SECONDS:
        raise InvalidArgument(f"{field}.trigger", f"waits at most {MAX_DELAY_SECONDS // 3600} hours (90 days)")
    if rule.action.type not in ACTIONS:
        raise InvalidArgument(f"{field}.action.type", f"unknown action {rule.action.type!r}")
    if rule.action.type == "skip_to_step":
        target = rule.action.payload.get("stepIndex")
        if not isinstance(target, int | float) or not 0 <= int(target) < step_count:
            raise InvalidArgument(f"{field}.action.payload.stepIndex", f"must be a step index in 0..{step_count - 1}")
    for key in ("delaySeconds", "resumeAfterSeconds"):
        value = rule.action.payload.get(key)
        if value is not None and not _is_seconds(value, allow_range=key == "delaySeconds"):
            raise InvalidArgument(
                f"{field}.action.payload.{key}",
                f"must be seconds from 0 to {MAX_DELAY_SECONDS} (90 days); delaySeconds may be a [low, high] range",
            )


def _is_seconds(value: object, *, allow_range: bool) -> bool:
    # A bound keeps a rule from parking a campaign (and its timer) for years, and keeps the
    # value inside what a timestamp can hold.
    def seconds(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= MAX_DELAY_SECONDS

    if allow_range and isinstance(value, list):
        return len(value) == 2 and all(seconds(v) for v in value) and value[0] <= value[1]
    return seconds(value)


def rules_for(strategy_rules: list[AdaptiveRule]) -> dict[str, RuleAction]:
    """The strategy's rules over the defaults: a strategy may override any trigger."""
    merged = dict(DEFAULT_RULES)
    merged.update({rule.trigger: rule.action for rule in strategy_rules})
    return merged


def delay_seconds(action: RuleAction, *, seed: str) -> int:
    """`delaySeconds` may be a number or a [low, high] range picked per contact."""
    value = action.payload.get("delaySeconds", 0)
    if isinstance(value, list):
        return pick_in_range(int(value[0]), int(value[-1]), seed)
    return int(value)


def validate_strategy(strategy: Strategy) -> None:
    steps = strategy.outreach_campaign
    if not 1 <= len(steps) <= MAX_STEPS:
        raise InvalidArgument("strategy.outreachCampaign", f"needs 1 to {MAX_STEPS} steps, got {len(steps)}")
    threads = threaded(steps)
    for i, step in enumerate(steps):
        if step.type not in CHANNELS:
            raise InvalidArgument(
                f"strategy.outreachCampaign[{i}].type",
                f"unknown channel {step.type!r}; expected one of {', '.join(CHANNELS)}",
            )
        if step.thread and not threads[i]:
            raise InvalidArgument(
                f"strategy.outreachCampaign[{i}].thread",
                "only an email step after an earlier email can continue its thread",
            )
        if step.type == "email" and not step.subject.strip() and not threads[i]:
            raise InvalidArgument(
                f"strategy.outreachCampaign[{i}].subject",
                "is required for an email that starts a thread (a follow-up without one continues the previous email's)",
            )
        if step.type == "email" and not step.content.strip():
            raise InvalidArgument(f"strategy.outreachCampaign[{i}].content", "is required for email")
        _check_placeholders(step, f"strategy.outreachCampaign[{i}]")
        if (window := step.send_window) is not None:
            field = f"strategy.outreachCampaign[{i}].sendWindow"
            if not isinstance(window, dict):
                raise InvalidArgument(field, "must be an object with weekdays, start_hour and end_hour")
            checked_window(window.get("weekdays"), window.get("start_hour"), window.get("end_hour"), field)
        variants.validate(step, i)
    for i, rule in enumerate(strategy.adaptive_rules):
        validate_rule(rule, index=i, step_count=len(steps))


def _check_placeholders(step: OutreachStep, field: str) -> None:
    """A placeholder that names no fact would go out empty: refused, naming the known ones."""
    copies: list[tuple[str, OutreachStep | StepVariant]] = [
        ("", step),
        *((f".variants[{j}]", variant) for j, variant in enumerate(step.variants)),
    ]
    for prefix, copy in copies:
        for name, text in (("subject", copy.subject), ("content", copy.content), ("callToAction", copy.call_to_action)):
            if found := templates.unknown(text):
                raise InvalidArgument(
                    f"{field}{prefix}.{name}",
                    f"unknown placeholder {found[0]}; the known placeholders are "
                    + ", ".join(f"{{{{{f}}}}}" for f in templates.FIELDS),
                )


def checked_window(weekdays: object, start_hour: object, end_hour: object, field: str) -> SendWindow:
    """A send window as a request or a strategy gives it, or InvalidArgument naming the part of
    `field` that is wrong. No weekdays means the default's."""
    days = weekdays or sorted(DEFAULT_WINDOW.weekdays)
    if not isinstance(days, list | tuple) or not all(_whole(d) and 1 <= d <= 7 for d in days):
        raise InvalidArgument(f"{field}.weekdays", "must be ISO weekdays 1 (Monday) to 7 (Sunday)")
    if not (_whole(start_hour) and _whole(end_hour) and 0 <= start_hour < end_hour <= 24):
        raise InvalidArgument(f"{field}.start_hour", "needs 0 <= start_hour < end_hour <= 24")
    return SendWindow(frozenset(days), start_hour, end_hour)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
