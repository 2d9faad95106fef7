"""The rules vocabulary without a database: which trigger an event stands for, what a timeout
trigger means, which rule answers, how a delay is picked, and what a rule may say."""

from __future__ import annotations

import pytest

from dripiq_common.errors import InvalidArgument
from dripiq_planner import rules
from dripiq_planner.strategy import AdaptiveRule, RuleAction


@pytest.mark.parametrize(
    ("event_type", "reason", "trigger"),
    [
        ("open", "", "open"),
        ("click", "", "click"),
        ("bounce", "bounce", "bounce"),
        ("bounce", "blocked", None),  # a soft bounce: the address still exists
        ("group_unsubscribe", "", "unsubscribe"),
        ("group_resubscribe", "", None),
        ("processed", "", None),
        ("made_up", "", None),
    ],
)
def test_each_event_stands_for_its_trigger(event_type: str, reason: str, trigger: str | None) -> None:
    assert rules.trigger_for(event_type, reason) == trigger


def test_timeout_and_class_triggers() -> None:
    assert rules.timeout_hours("no_open_48h") == ("open", 48)
    assert rules.timeout_hours("no_reply_168h") == ("reply", 168)
    assert rules.timeout_hours("no_open_48") is None and rules.timeout_hours("open") is None
    assert rules.class_trigger("not_interested") == "reply:not_interested"
    assert rules.class_trigger("angry") is None and rules.class_trigger("") is None
    assert all(rules.is_trigger(t) for t in ("open", "no_click_12h", "reply:interested", "auto_reply"))
    assert not any(rules.is_trigger(t) for t in ("reply:angry", "no_open_h", "opened"))


def test_a_strategy_rule_overrides_its_default_and_keeps_the_others() -> None:
    mine = AdaptiveRule(trigger="open", action=RuleAction(type="skip_to_step", payload={"stepIndex": 2}))

    merged = rules.rules_for([mine])

    assert merged["open"] == mine.action
    assert merged["reply"] == rules.DEFAULT_RULES["reply"]
    assert merged["reply:unsubscribe_request"].type == "cancel_campaign"
    assert merged["auto_reply"].type == "pause_campaign"
    assert rules.DEFAULT_RULES["open"].type == "schedule_next_step", "the defaults are not changed"


def test_a_delay_range_is_picked_per_contact_and_the_same_each_time() -> None:
    ranged = RuleAction(type="schedule_next_step", payload={"delaySeconds": [86400, 172800]})

    picks = {rules.delay_seconds(ranged, seed=f"campaign-{n}:1:open") for n in range(200)}

    assert all(86400 <= p <= 172800 for p in picks) and len(picks) > 150
    assert rules.delay_seconds(ranged, seed="c:1:open") == rules.delay_seconds(ranged, seed="c:1:open")
    assert rules.delay_seconds(RuleAction(type="schedule_next_step", payload={"delaySeconds": 3600}), seed="x") == 3600
    assert rules.delay_seconds(RuleAction(type="cancel_campaign"), seed="x") == 0


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            AdaptiveRule(trigger="opened", action=RuleAction(type="cancel_campaign")),
            "strategy.adaptiveRules[0].trigger",
        ),
        (AdaptiveRule(trigger="open", action=RuleAction(type="explode")), "strategy.adaptiveRules[0].action.type"),
        (
            AdaptiveRule(trigger="click", action=RuleAction(type="skip_to_step", payload={"stepIndex": 3})),
            "strategy.adaptiveRules[0].action.payload.stepIndex",
        ),
        (
            AdaptiveRule(trigger="open", action=RuleAction(type="schedule_next_step", payload={"delaySeconds": -1})),
            "strategy.adaptiveRules[0].action.payload.delaySeconds",
        ),
        (
            AdaptiveRule(
                trigger="open", action=RuleAction(type="schedule_next_step", payload={"delaySeconds": [10, 5]})
            ),
            "strategy.adaptiveRules[0].action.payload.delaySeconds",
        ),
        (
            AdaptiveRule(
                trigger="auto_reply", action=RuleAction(type="pause_campaign", payload={"resumeAfterSeconds": [1, 2]})
            ),
            "strategy.adaptiveRules[0].action.payload.resumeAfterSeconds",
        ),
    ],
)
def test_a_bad_rule_names_its_field(rule: AdaptiveRule, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        rules.validate_rule(rule, index=0, step_count=3)
    assert raised.value.field == field


def test_a_good_rule_passes() -> None:
    rules.validate_rule(
        AdaptiveRule(
            trigger="no_open_72h", action=RuleAction(type="reschedule_step", payload={"delaySeconds": [60, 120]})
        ),
        index=0,
        step_count=3,
    )
