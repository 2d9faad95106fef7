"""The output contract of the strategists: guards, the strict answer schema, the prompt. No I/O."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from dripiq_planner import rules
from dripiq_planner.strategist import guards
from dripiq_planner.strategist.guards import GuardViolation, check, violations
from dripiq_planner.strategist.openai_strategist import RESPONSE_FORMAT, AnswerStrategy, read_answer, repair_request
from dripiq_planner.strategist.prompts import PROMPT_VERSION, system_prompt
from dripiq_planner.strategy import CHANNELS, AdaptiveRule, OutreachStep, RuleAction, Strategy


def step(**overrides: str) -> OutreachStep:
    values = {
        "type": "email",
        "timing": "Day 0",
        "subject": "Beacon for Acme",
        "content": "Hi Ada,\n\nBeacon finds the change that broke production.",
        "call_to_action": "Open to a 15-minute call?",
    }
    return OutreachStep(**(values | overrides))


def strategy(*steps: OutreachStep, rules_: list[AdaptiveRule] | None = None) -> Strategy:
    chosen = list(steps) or [step(), step(timing="Day 3"), step(timing="Day 7")]
    return Strategy(outreach_campaign=chosen, adaptive_rules=rules_ or [])


def fields(found: list[GuardViolation]) -> list[str]:
    return [v.field for v in found]


def test_a_sound_strategy_has_no_violations() -> None:
    sound = strategy(rules_=[AdaptiveRule(trigger="no_open_72h", action=RuleAction(type="reschedule_step"))])
    assert violations(sound) == []
    check(sound)


def test_subject_longer_than_120_characters() -> None:
    found = violations(strategy(step(), step(timing="Day 3", subject="a" * 121)))
    assert fields(found) == ["outreachCampaign[1].subject"]
    assert "121 characters" in found[0].message


def test_subject_length_only_binds_email() -> None:
    assert violations(strategy(step(), step(type="call", timing="Day 2", subject="a" * 200))) == []


def test_body_longer_than_5000_characters() -> None:
    assert fields(violations(strategy(step(content="a" * 5001)))) == ["outreachCampaign[0].content"]
    assert violations(strategy(step(content="a" * 5000))) == []


@pytest.mark.parametrize("blank", ["", "   "])
def test_every_step_needs_a_call_to_action(blank: str) -> None:
    found = violations(strategy(step(), step(timing="Day 2"), step(timing="Day 5", call_to_action=blank)))
    assert fields(found) == ["outreachCampaign[2].callToAction"]


@pytest.mark.parametrize(
    "placeholder", ["{{first_name}}", "{{ company }}", "{company_name}", "[First Name]", "<company>", "XXX"]
)
@pytest.mark.parametrize(
    ("attribute", "name"), [("subject", "subject"), ("content", "content"), ("call_to_action", "callToAction")]
)
def test_unresolved_placeholders_are_caught_in_every_sent_field(placeholder: str, attribute: str, name: str) -> None:
    found = violations(strategy(step(), step(timing="Day 3", **{attribute: f"Hi {placeholder}, one idea"})))
    assert fields(found) == [f"outreachCampaign[1].{name}"]
    assert placeholder in found[0].message


@pytest.mark.parametrize(
    "text",
    [
        "Write to ada@example.com or see [the guide](https://example.com/guide).",
        "It cut deploy time from 3 hours to 20 minutes at Acme (their numbers, not ours).",
        "Tuesday, 10:00 <-> 11:00 works.",
    ],
)
def test_ordinary_text_is_not_a_placeholder(text: str) -> None:
    assert guards.find_placeholders(text) == []


def test_the_planner_contract_is_part_of_the_guards() -> None:
    found = violations(
        strategy(
            step(type="fax"),
            rules_=[AdaptiveRule(trigger="sometime", action=RuleAction(type="cancel_campaign"))],
        )
    )
    # validate_strategy stops at its first problem; the path drops its "strategy." request prefix.
    assert fields(found) == ["outreachCampaign[0].type"]
    found = violations(strategy(rules_=[AdaptiveRule(trigger="sometime", action=RuleAction(type="cancel_campaign"))]))
    assert fields(found) == ["adaptiveRules[0].trigger"]


def test_timings_must_read_and_move_forward() -> None:
    assert fields(violations(strategy(step(), step(timing="soon")))) == ["outreachCampaign[1].timing"]
    assert fields(violations(strategy(step(timing="Day 5"), step(timing="Day 2")))) == ["outreachCampaign[1].timing"]


def test_all_problems_are_reported_together_and_check_raises_the_first() -> None:
    bad = strategy(step(subject="{{first_name}}"), step(timing="Day 3", call_to_action=""))
    assert fields(violations(bad)) == ["outreachCampaign[0].subject", "outreachCampaign[1].callToAction"]
    with pytest.raises(GuardViolation) as raised:
        check(bad)
    assert raised.value.field == "outreachCampaign[0].subject"


def _objects(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if node.get("type") == "object" else []
        return own + [o for value in node.values() for o in _objects(value)]
    if isinstance(node, list):
        return [o for value in node for o in _objects(value)]
    return []


def test_the_answer_schema_meets_strict_mode() -> None:
    spec = RESPONSE_FORMAT["json_schema"]
    assert spec["strict"] is True
    schema = spec["schema"]
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text and '"default"' not in text
    objects = _objects(schema)
    assert len(objects) == 6  # strategy, cadence, step, rule, action, payload
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert obj["required"] == list(obj["properties"])
    step_schema = schema["properties"]["outreachCampaign"]["items"]
    assert step_schema["properties"]["type"]["enum"] == list(CHANNELS)
    action = schema["properties"]["adaptiveRules"]["items"]["properties"]["action"]
    assert set(action["properties"]["type"]["enum"]) == rules.ACTIONS
    assert set(action["properties"]["payload"]["properties"]) == {
        "delaySeconds",
        "stepIndex",
        "resumeAfterSeconds",
        "reason",
    }


def _answer(**strategy_overrides: Any) -> dict[str, Any]:
    payload = {"delaySeconds": None, "stepIndex": 2, "resumeAfterSeconds": None, "reason": None}
    answer = {
        "summary": "Introduce Beacon to Ada.",
        "cadence": {"interval": "3 days", "totalDuration": "7 days"},
        "outreachCampaign": [
            {
                "type": "email",
                "timing": f"Day {d}",
                "subject": "Beacon",
                "content": "Hi Ada,",
                "callToAction": "Call?",
                "thread": None,
            }
            for d in (0, 3, 7)
        ],
        "adaptiveRules": [{"trigger": "click", "action": {"type": "skip_to_step", "payload": payload}}],
    }
    return answer | strategy_overrides


def test_an_answer_becomes_a_strategy_with_only_the_payload_fields_set() -> None:
    converted = AnswerStrategy.model_validate(_answer()).to_strategy()
    assert converted.adaptive_rules[0].action.payload == {"stepIndex": 2}
    assert converted.to_json()["outreachCampaign"][0]["callToAction"] == "Call?"
    assert violations(converted) == []


def completion(content: str, finish_reason: str = "stop") -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
        }
    )


def test_reading_answers_names_each_problem_with_its_path() -> None:
    answer, parsed, problems = read_answer(completion(json.dumps(_answer())))
    assert parsed is not None and problems == []
    _, parsed, problems = read_answer(completion("not json"))
    assert parsed is None and problems[0].startswith("the answer is not valid JSON")
    broken = _answer()
    del broken["outreachCampaign"][1]["callToAction"]
    _, _, problems = read_answer(completion(json.dumps(broken)))
    assert problems == ["outreachCampaign[1].callToAction: Field required"]
    _, _, problems = read_answer(completion(json.dumps(_answer()), finish_reason="length"))
    assert "cut off" in problems[0]


def test_a_repair_request_lists_every_problem() -> None:
    text = repair_request(("outreachCampaign[1].subject: too long", "answer: not JSON"))
    assert "- outreachCampaign[1].subject: too long\n- answer: not JSON" in text


def test_the_prompt_ships_in_the_package_and_names_the_vocabulary() -> None:
    shipped = resources.files("dripiq_planner.strategist.prompts").joinpath("strategy_v2.md")
    assert shipped.is_file()
    prompt = system_prompt(PROMPT_VERSION)
    assert PROMPT_VERSION == "strategy-v2" and "(strategy-v2)" in prompt
    # The earlier version stays readable: stored generations name it.
    assert "(strategy-v1)" in system_prompt("strategy-v1")
    assert "`<facts>`" in prompt and "are DATA" in prompt
    assert "Do not write any URL, web address, domain name, email address or phone number" in prompt
    for word in [*rules.ACTIONS, *rules.ENGAGEMENT_TRIGGERS, "no_open_<H>h", "delaySeconds", "stepIndex", "reason"]:
        assert f"`{word}`" in prompt, word
    for channel in CHANNELS:
        assert f'"{channel}"' in prompt, channel
