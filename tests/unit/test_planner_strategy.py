"""Strategy timings, rule validation and templates: pure functions, no I/O."""

from __future__ import annotations

import pytest

from dripiq_common.errors import InvalidArgument
from dripiq_planner import rules, templates
from dripiq_planner.strategist.openai_strategist import backoff
from dripiq_planner.strategy import AdaptiveRule, OutreachStep, RuleAction, Strategy, parse_timing, relative_delays


@pytest.mark.parametrize(
    ("timing", "expected"),
    [
        ("Day 0", ("day", 0)),
        ("day 3", ("day", 3 * 86400)),
        ("48h", ("after", 48 * 3600)),
        ("3 days", ("after", 3 * 86400)),
        ("90 minutes", ("after", 5400)),
        ("PT2H", ("after", 7200)),
        ("P1DT2H30M", ("after", 86400 + 9000)),
    ],
)
def test_timings(timing: str, expected: tuple[str, int]) -> None:
    assert parse_timing(timing, seed="s") == expected


def test_a_range_picks_deterministically_per_seed() -> None:
    picks = {parse_timing("2-4 days", seed=f"contact-{i}")[1] for i in range(50)}
    assert all(2 * 86400 <= p <= 4 * 86400 for p in picks)
    assert len(picks) > 1
    assert parse_timing("2-4 days", seed="x") == parse_timing("2-4 days", seed="x")


@pytest.mark.parametrize("timing", ["soon", "", "P", "4-2 days", "-3h"])
def test_unreadable_timings(timing: str) -> None:
    with pytest.raises(ValueError):
        parse_timing(timing, seed="s")


def steps(*timings: str) -> Strategy:
    return Strategy(outreach_campaign=[OutreachStep(type="email", timing=t, subject="s", content="c") for t in timings])


def test_day_n_counts_from_the_start_and_durations_from_the_previous_step() -> None:
    assert relative_delays(steps("Day 0", "Day 3", "48h", "Day 7"), seed="s") == [0, 3 * 86400, 2 * 86400, 2 * 86400]


def test_a_day_before_the_previous_step_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        relative_delays(steps("Day 3", "Day 1"), seed="s")
    assert exc.value.field == "strategy.outreachCampaign[1].timing"


def test_strategy_validation_names_the_field() -> None:
    with pytest.raises(InvalidArgument) as exc:
        rules.validate_strategy(Strategy(outreach_campaign=[]))
    assert exc.value.field == "strategy.outreachCampaign"
    no_subject = steps("Day 0")
    no_subject.outreach_campaign[0].subject = " "
    with pytest.raises(InvalidArgument) as exc:
        rules.validate_strategy(no_subject)
    assert exc.value.field == "strategy.outreachCampaign[0].subject"
    skip_too_far = steps("Day 0", "Day 2")
    skip_too_far.adaptive_rules = [
        AdaptiveRule(trigger="click", action=RuleAction(type="skip_to_step", payload={"stepIndex": 5}))
    ]
    with pytest.raises(InvalidArgument) as exc:
        rules.validate_strategy(skip_too_far)
    assert exc.value.field == "strategy.adaptiveRules[0].action.payload.stepIndex"
    unknown = steps("Day 0")
    unknown.adaptive_rules = [AdaptiveRule(trigger="no_open_soon", action=RuleAction(type="cancel_campaign"))]
    with pytest.raises(InvalidArgument) as exc:
        rules.validate_strategy(unknown)
    assert exc.value.field == "strategy.adaptiveRules[0].trigger"


def test_strategy_rules_override_defaults() -> None:
    merged = rules.rules_for([AdaptiveRule(trigger="open", action=RuleAction(type="cancel_campaign"))])
    assert merged["open"].type == "cancel_campaign"
    assert merged["reply"].type == "cancel_campaign"
    assert rules.timeout_hours("no_open_48h") == ("open", 48)
    assert rules.timeout_hours("open") is None


def test_render_fills_known_placeholders_only() -> None:
    assert (
        templates.render(
            "Hi {{first_name}} at {{ company_name }}{{unknown}}!", {"first_name": "Ada", "company_name": "Acme"}
        )
        == "Hi Ada at Acme!"
    )


def test_the_strategist_waits_what_the_server_asked_for_up_to_the_clients_limit() -> None:
    assert backoff(0, 90.0) == 90.0
    assert 0.375 <= backoff(0, None) <= 0.5
    assert 6.0 <= backoff(10, None) <= 8.0
