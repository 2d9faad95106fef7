"""The template strategist: deterministic, personalized at plan time, always within the guards."""

from __future__ import annotations

import re

import pytest

from dripiq_planner.settings import PlannerSettings
from dripiq_planner.strategist import PlanningFacts
from dripiq_planner.strategist.factory import build_strategist
from dripiq_planner.strategist.guards import violations
from dripiq_planner.strategist.template_strategist import LIBRARY, ContactFacts, Sequence, TemplateStrategist

DESCRIPTION = "Beacon watches your deploys and names the change that broke production. It reads your Git history."


def facts(
    *,
    email: str = "ada@acme.example",
    contact: dict[str, str] | None = None,
    lead: dict[str, str] | None = None,
    product: dict[str, str] | None = None,
) -> PlanningFacts:
    return PlanningFacts(
        tenant_id="t-1",
        correlation_id="corr-1",
        contact={"first_name": "Ada", "last_name": "Lovelace", "title": "VP Engineering", "email": email}
        if contact is None
        else contact,
        lead={"company_name": "Acme Analytics", "industry": "fintech"} if lead is None else lead,
        product={"name": "Beacon", "description": DESCRIPTION} if product is None else product,
    )


FULL = facts()
EMPTY = facts(contact={}, lead={}, product={})
ALL_TEXT = ("subject", "content", "call_to_action")


def sent_text(sequence: Sequence, chosen: PlanningFacts) -> list[str]:
    strategy = sequence.render(ContactFacts.of(chosen))
    return [getattr(step, name) for step in strategy.outreach_campaign for name in ALL_TEXT]


async def test_the_same_contact_always_gets_the_same_strategy() -> None:
    first = await TemplateStrategist().plan(FULL)
    second = await TemplateStrategist().plan(facts())
    assert first.strategy == second.strategy
    assert first.generation == second.generation


async def test_contacts_are_spread_over_the_library() -> None:
    chosen = {
        (await TemplateStrategist().plan(facts(email=f"person-{i}@acme.example"))).generation.prompt_version
        for i in range(40)
    }
    assert chosen == {sequence.name for sequence in LIBRARY}


async def test_the_generation_records_a_template_without_a_model() -> None:
    planned = await TemplateStrategist().plan(FULL)
    generation = planned.generation
    assert (generation.strategist, generation.outcome, generation.model) == ("template", "template", "")
    assert generation.prompt_version in {sequence.name for sequence in LIBRARY}
    assert generation.correlation_id == "corr-1"
    assert generation.input_json == {"facts": FULL.as_json()}
    assert generation.output_json == planned.strategy.to_json()
    assert planned.earlier == ()


def test_the_library_is_email_only_with_two_to_four_steps() -> None:
    assert 3 <= len(LIBRARY) <= 4
    for sequence in LIBRARY:
        steps = sequence.render(ContactFacts.of(FULL)).outreach_campaign
        assert 2 <= len(steps) <= 4
        assert {step.type for step in steps} == {"email"}
        assert steps[0].timing == "Day 0"


@pytest.mark.parametrize("sequence", LIBRARY, ids=lambda s: s.name)
def test_every_sequence_is_personalized_from_the_facts(sequence: Sequence) -> None:
    strategy = sequence.render(ContactFacts.of(FULL))
    text = "\n".join(sent_text(sequence, FULL))
    assert all(step.content.startswith("Hi Ada,") for step in strategy.outreach_campaign)
    assert "Acme Analytics" in text and "Beacon" in text
    assert "Ada" in strategy.summary and "Acme Analytics" in strategy.summary
    assert "{{" not in text


@pytest.mark.parametrize("chosen", [FULL, EMPTY], ids=["full", "empty"])
@pytest.mark.parametrize("sequence", LIBRARY, ids=lambda s: s.name)
def test_every_sequence_passes_the_guards(sequence: Sequence, chosen: PlanningFacts) -> None:
    assert violations(sequence.render(ContactFacts.of(chosen))) == []


@pytest.mark.parametrize("sequence", LIBRARY, ids=lambda s: s.name)
def test_missing_facts_leave_no_gaps(sequence: Sequence) -> None:
    for text in sent_text(sequence, EMPTY):
        assert text.strip() == text and text
        assert not re.search(r"\s[,.?!:;]|\s{3,}| {2}|\bNone\b|\bfor \.|\bat \.", text), text
    strategy = sequence.render(ContactFacts.of(EMPTY))
    assert all(step.content.startswith("Hi there,") for step in strategy.outreach_campaign)


async def test_bad_data_is_left_out_rather_than_sent() -> None:
    planned = await TemplateStrategist().plan(
        facts(
            contact={"first_name": "[First Name]", "email": "ada@acme.example"},
            lead={"company_name": "A" * 200},
            product={"name": "{{product}}", "description": "word " * 400},
        )
    )
    text = "\n".join(getattr(step, name) for step in planned.strategy.outreach_campaign for name in ALL_TEXT)
    assert "[First Name]" not in text and "{{product}}" not in text and "A" * 200 not in text
    assert "Hi there," in text
    assert violations(planned.strategy) == []


def test_a_long_description_is_cut_at_a_word() -> None:
    cleaned = ContactFacts.of(facts(product={"name": "Beacon", "description": "word " * 400})).description
    assert cleaned is not None and len(cleaned) <= 600 and cleaned.endswith("word…")


def test_without_openai_settings_the_planner_uses_the_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    settings = PlannerSettings(database_url="postgresql://planner@127.0.0.1/dripiq")
    assert isinstance(build_strategist(settings), TemplateStrategist)
    blank = PlannerSettings(database_url="postgresql://planner@127.0.0.1/dripiq", openai_api_key="")
    assert isinstance(build_strategist(blank), TemplateStrategist)
