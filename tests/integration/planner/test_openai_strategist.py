"""The AI strategist through the real `openai` client, over HTTP, against the fake OpenAI server.

No database or NATS: the fake listens on 127.0.0.1 on an ephemeral port, and each test scripts
its answers with `fake.queue(...)`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from openai import AsyncOpenAI, BadRequestError
from prometheus_client import REGISTRY

from dripiq_devtools.fake_openai import (
    INVALID,
    MALFORMED,
    RATE_LIMITED,
    SERVER_ERROR,
    VALID,
    FakeOpenAI,
)
from dripiq_devtools.fake_openai.replies import MALFORMED_ANSWER, unwrapped
from dripiq_planner.settings import PlannerSettings
from dripiq_planner.strategist import PlanningFacts
from dripiq_planner.strategist.factory import build_strategist
from dripiq_planner.strategist.openai_strategist import RESPONSE_FORMAT, OpenAIStrategist
from dripiq_planner.strategist.prompts import PROMPT_VERSION, system_prompt
from dripiq_planner.strategist.template_strategist import TemplateStrategist

MODEL = "gpt-4o-mini"
MAX_RETRIES = 1

FACTS = PlanningFacts(
    tenant_id="t-ai",
    correlation_id="corr-42",
    contact={"first_name": "Ada", "title": "VP Engineering", "email": "ada@acme.example"},
    lead={"company_name": "Acme Analytics", "industry": "fintech"},
    product={"name": "Beacon", "description": "Beacon names the change that broke production."},
    voice="warm, brief, no jargon",
    guidelines="never promise pricing",
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(retry_after_seconds=0.01) as server:
        yield server


def client_for(fake: FakeOpenAI, *, api_key: str = "sk-test") -> AsyncOpenAI:
    return AsyncOpenAI(api_key=api_key, base_url=fake.url, max_retries=MAX_RETRIES, timeout=5.0)


@pytest_asyncio.fixture
async def strategist(fake: FakeOpenAI) -> AsyncIterator[OpenAIStrategist]:
    planner = OpenAIStrategist(client=client_for(fake), model=MODEL, fallback=TemplateStrategist())
    yield planner
    await planner.aclose()


async def template_plan() -> dict[str, object]:
    return (await TemplateStrategist().plan(FACTS)).strategy.to_json()


async def test_a_valid_answer_is_used_and_audited(fake: FakeOpenAI, strategist: OpenAIStrategist) -> None:
    planned = await strategist.plan(FACTS)

    generation = planned.generation
    assert (generation.strategist, generation.outcome, generation.error) == ("openai", "ok", "")
    assert (generation.model, generation.prompt_version, generation.correlation_id) == (MODEL, "strategy-v2", "corr-42")
    assert generation.prompt_tokens > 0 and generation.completion_tokens > 0
    assert generation.input_json == {"facts": FACTS.as_json()}
    assert generation.output_json == planned.strategy.to_json()
    assert planned.earlier == ()
    assert planned.strategy.outreach_campaign[0].content.startswith("Hi Ada,")
    # The strict payload's nulls do not reach the stored rule.
    assert planned.strategy.adaptive_rules[0].action.payload == {"delaySeconds": 86400}

    [request] = fake.requests
    assert request.body["model"] == MODEL
    assert request.response_format == RESPONSE_FORMAT
    assert request.response_format["type"] == "json_schema"
    assert request.response_format["json_schema"]["strict"] is True
    assert json.loads(unwrapped(request.texts("user")[0])) == FACTS.as_json()


async def test_the_model_sees_the_grounding_rules_and_exactly_the_facts(
    fake: FakeOpenAI, strategist: OpenAIStrategist
) -> None:
    await strategist.plan(FACTS)

    [request] = fake.requests
    assert [m["role"] for m in request.messages] == ["system", "user"]
    [system] = request.texts("system")
    assert system == system_prompt(PROMPT_VERSION)
    assert "Ground every sentence ONLY in the facts in the user message. Do not invent facts." in system
    assert "Never make up numbers" in system and "customers" in system and "awards" in system
    assert "No placeholders" in system
    # Only what the facts hold: no tenant id, correlation id or anything else the planner knows.
    [user] = request.texts("user")
    # Delimited as data, which the system prompt says it is.
    assert user.startswith("<facts>\n") and user.endswith("\n</facts>")
    assert "between `<facts>` and `</facts>`" in system
    assert json.loads(unwrapped(user)) == {
        "contact": FACTS.contact,
        "lead": FACTS.lead,
        "product": FACTS.product,
        "voice": FACTS.voice,
        "guidelines": FACTS.guidelines,
    }
    assert "t-ai" not in user and "corr-42" not in user


async def test_a_malformed_answer_is_repaired(fake: FakeOpenAI, strategist: OpenAIStrategist) -> None:
    fake.queue(MALFORMED, VALID)

    planned = await strategist.plan(FACTS)

    assert planned.generation.outcome == "repaired"
    assert planned.generation.strategist == "openai"
    [failed] = planned.earlier
    assert failed.outcome == "failed" and "not valid JSON" in failed.error
    assert failed.output_json == {"raw": MALFORMED_ANSWER}
    first, repair = fake.requests
    assert [m["role"] for m in repair.messages] == ["system", "user", "assistant", "user"]
    assert repair.messages[:2] == first.messages
    assert repair.texts("assistant") == [MALFORMED_ANSWER]
    problems_sent = repair.texts("user")[1]
    assert "not valid JSON" in problems_sent and "Write the complete strategy again" in problems_sent
    assert planned.generation.input_json["problems"] == [failed.error]


async def test_a_repair_names_the_guard_problems_with_their_paths(
    fake: FakeOpenAI, strategist: OpenAIStrategist
) -> None:
    fake.queue(INVALID, VALID)

    planned = await strategist.plan(FACTS)

    assert planned.generation.outcome == "repaired"
    problems_sent = fake.requests[1].texts("user")[1]
    assert "outreachCampaign[1].type: unknown channel 'fax'" in problems_sent
    assert "outreachCampaign[2].subject: has unresolved placeholders '{{first_name}}'" in problems_sent


async def test_two_bad_answers_fall_back_to_the_template(fake: FakeOpenAI, strategist: OpenAIStrategist) -> None:
    fake.queue(MALFORMED, MALFORMED)

    planned = await strategist.plan(FACTS)

    assert planned.strategy.to_json() == await template_plan()
    generation = planned.generation
    assert (generation.strategist, generation.outcome, generation.model) == ("template", "fallback", "")
    assert generation.error.startswith("AI strategy failed: the answer is not valid JSON")
    assert [(g.strategist, g.outcome) for g in planned.earlier] == [("openai", "failed"), ("openai", "failed")]
    assert all(g.error and g.prompt_tokens > 0 for g in planned.earlier)
    assert len(fake.requests) == 2


async def test_a_rate_limit_is_retried_by_the_client(fake: FakeOpenAI, strategist: OpenAIStrategist) -> None:
    fake.queue(RATE_LIMITED, VALID)

    planned = await strategist.plan(FACTS)

    assert planned.generation.outcome == "ok"
    assert planned.earlier == ()
    assert len(fake.requests) == 2


async def test_server_errors_beyond_the_retries_fall_back(fake: FakeOpenAI, strategist: OpenAIStrategist) -> None:
    fake.queue(*[SERVER_ERROR] * (MAX_RETRIES + 1))

    planned = await strategist.plan(FACTS)

    assert (planned.generation.strategist, planned.generation.outcome) == ("template", "fallback")
    assert planned.strategy.to_json() == await template_plan()
    [failed] = planned.earlier
    assert failed.outcome == "failed" and failed.output_json is None
    assert failed.error.startswith("InternalServerError:") and failed.model == MODEL
    # No repair turn after an API failure: the first request and its retries only.
    assert len(fake.requests) == MAX_RETRIES + 1


async def test_a_model_slower_than_the_deadline_gets_the_template(fake: FakeOpenAI) -> None:
    fake.latency_seconds = 1.0
    planner = OpenAIStrategist(
        client=client_for(fake), model=MODEL, fallback=TemplateStrategist(), deadline_seconds=0.2
    )
    planned = await planner.plan(FACTS)
    await planner.aclose()

    assert (planned.generation.strategist, planned.generation.outcome) == ("template", "fallback")
    assert planned.strategy.to_json() == await template_plan()
    [late] = planned.earlier
    assert late.outcome == "failed" and "no usable answer within 0.2 s" in late.error


async def test_a_rejected_key_falls_back_without_retrying() -> None:
    async with FakeOpenAI(api_key="sk-right") as fake:
        planner = OpenAIStrategist(
            client=client_for(fake, api_key="sk-wrong"), model=MODEL, fallback=TemplateStrategist()
        )
        planned = await planner.plan(FACTS)
        await planner.aclose()

    assert planned.generation.outcome == "fallback"
    [failed] = planned.earlier
    assert failed.error.startswith("AuthenticationError:") and "Incorrect API key provided" in failed.error


async def test_requests_in_flight_are_bounded(fake: FakeOpenAI) -> None:
    fake.latency_seconds = 0.05
    planner = OpenAIStrategist(client=client_for(fake), model=MODEL, fallback=TemplateStrategist(), concurrency=2)
    try:
        results = await asyncio.gather(*(planner.plan(FACTS) for _ in range(6)))
    finally:
        await planner.aclose()

    assert {planned.generation.outcome for planned in results} == {"ok"}
    assert fake.max_in_flight == 2


async def test_the_base_url_alone_selects_the_ai_strategist(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("PLANNER_AI_MAX_RETRIES", "0")
    settings = PlannerSettings(database_url="postgresql://planner@127.0.0.1/dripiq")

    planner = build_strategist(settings)

    assert isinstance(planner, OpenAIStrategist)
    try:
        planned = await planner.plan(FACTS)
    finally:
        await planner.aclose()
    assert planned.generation.outcome == "ok"
    assert fake.requests[0].body["model"] == settings.ai_model


async def test_the_fake_answers_like_the_api_without_a_key(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{fake.url}/chat/completions", json={"model": MODEL, "messages": []}) as response:
            body = await response.json()
    assert response.status == 401
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


async def test_the_fake_rejects_a_schema_strict_mode_would_reject(fake: FakeOpenAI) -> None:
    loose = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": []}
    client = client_for(fake)
    try:
        with pytest.raises(BadRequestError) as raised:
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "{}"}],
                response_format={"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": loose}},
            )
    finally:
        await client.close()
    assert raised.value.param == "response_format"
    assert "'additionalProperties' is required to be supplied and to be false" in raised.value.message


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_tokens_and_outcomes_are_counted_for_operators(
    fake: FakeOpenAI, strategist: OpenAIStrategist
) -> None:
    calls = {r: sample("dripiq_planner_ai_call_seconds_count", result=r) for r in ("usable", "unusable", "error")}
    outcomes = {o: sample("dripiq_planner_ai_strategies_total", outcome=o) for o in ("ok", "repaired", "fallback")}
    prompt_tokens = sample("dripiq_planner_ai_tokens_total", kind="prompt")
    fake.queue(MALFORMED, VALID, *[SERVER_ERROR] * (MAX_RETRIES + 1))

    repaired = await strategist.plan(FACTS)
    fallback = await strategist.plan(FACTS)

    assert (repaired.generation.outcome, fallback.generation.outcome) == ("repaired", "fallback")
    # The client's own retry of a server error is inside one call.
    assert {r: sample("dripiq_planner_ai_call_seconds_count", result=r) - calls[r] for r in calls} == {
        "usable": 1,
        "unusable": 1,
        "error": 1,
    }
    assert {o: sample("dripiq_planner_ai_strategies_total", outcome=o) - outcomes[o] for o in outcomes} == {
        "ok": 0,
        "repaired": 1,
        "fallback": 1,
    }
    used = repaired.generation.prompt_tokens + repaired.earlier[0].prompt_tokens
    assert used > 0 and sample("dripiq_planner_ai_tokens_total", kind="prompt") - prompt_tokens == used
