"""The fake OpenAI server's reading of replies: deterministic, within the requested schema, and
in the shape the events service's AI classifier accepts. No server is started."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from dripiq_devtools.fake_openai.replies import (
    REPLY_CLASSES,
    off_schema_classification,
    reply_class_of,
    reply_classification,
)
from dripiq_devtools.fake_openai.validation import strict_schema_problem
from dripiq_events.ai_classifier import RESPONSE_FORMAT, ReplyAnswer
from dripiq_events.reply_classes import ReplyClass


def request(
    user: str, *, system: str = "Classify the reply.", response_format: Any = RESPONSE_FORMAT
) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "response_format": response_format,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Please UNSUBSCRIBE me. Why do you keep writing?", "unsubscribe_request"),
        ("We're not interested, thanks.", "not_interested"),
        ("Not a fit for us. Could you reach out to Ana instead?", "not_interested"),
        ("Please reach out to Ana, she owns this.", "referral"),
        ("Interested: can we book a call?", "interested"),
        ("What does it cost?", "question"),
        ("Thanks for the note.", "other"),
        ("", "other"),
    ],
)
def test_the_first_matching_rule_gives_the_class(text: str, expected: str) -> None:
    assert reply_class_of(text)[0] == expected


def test_its_classes_are_the_services_classes() -> None:
    assert sorted(REPLY_CLASSES) == sorted(c.value for c in ReplyClass)


def test_only_the_user_messages_are_read() -> None:
    answer = reply_classification(request("<reply>Sounds great</reply>", system="unsubscribe_request: not interested"))

    assert answer["reply_class"] == "other"


def test_a_class_outside_the_schemas_enum_is_never_answered() -> None:
    narrowed = copy.deepcopy(RESPONSE_FORMAT)
    narrowed["json_schema"]["schema"]["properties"]["reply_class"]["enum"] = ["interested", "other"]

    assert reply_classification(request("Does it do SSO?", response_format=narrowed))["reply_class"] == "other"


def test_the_services_schema_is_strict_and_the_fakes_answers_fit_it() -> None:
    assert strict_schema_problem(RESPONSE_FORMAT["json_schema"]["schema"]) is None
    for text in ("Remove me", "No thanks", "Talk to my colleague Ana", "Let's talk", "Price?", "Ok"):
        answer = ReplyAnswer.model_validate(reply_classification(request(text)))
        assert 0 <= answer.confidence <= 1 and answer.reason


def test_the_off_schema_answer_breaks_the_schema() -> None:
    with pytest.raises(ValidationError):
        ReplyAnswer.model_validate(off_schema_classification())
