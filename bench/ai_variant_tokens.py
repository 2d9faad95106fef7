"""Tokens one AI-written plan costs with and without A/B variants (tenant setting ai_variants),
as the fake OpenAI reports them in `usage`, and what the planner reserves from the tenant's
daily budget for the request. The fake counts a token per four characters of the messages and
of its answer; the real API also counts the response schema, so the schema's bytes are printed
apart. The anchor is the same plan without variants, in the same run.

    .venv/bin/python bench/ai_variant_tokens.py [--plans N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

import structlog
from openai import AsyncOpenAI

from dripiq_devtools.fake_openai import FakeOpenAI
from dripiq_planner.strategist import PlanningFacts
from dripiq_planner.strategist.ai_variants import VariantFocus, VariantRequest
from dripiq_planner.strategist.openai_strategist import (
    OpenAIStrategist,
    facts_message,
    prompt_token_bound,
    prompt_version,
    response_format,
)
from dripiq_planner.strategist.prompts import system_prompt
from dripiq_planner.strategist.template_strategist import TemplateStrategist

CASES: tuple[VariantRequest | None, ...] = (
    None,
    VariantRequest(2, VariantFocus.SUBJECT),
    VariantRequest(2, VariantFocus.CONTENT),
    VariantRequest(2, VariantFocus.BOTH),
    VariantRequest(3, VariantFocus.BOTH),
)


def facts(i: int, variants: VariantRequest | None) -> PlanningFacts:
    return PlanningFacts(
        tenant_id="bench",
        correlation_id=f"plan-{i}",
        contact={"first_name": f"Ada{i}", "title": "VP Engineering"},
        lead={"company_name": f"Acme {i}", "industry": "fintech"},
        product={"name": "Beacon", "description": "Beacon names the change that broke production, within minutes."},
        voice="warm, brief, no jargon",
        guidelines="never promise pricing",
        variants=variants,
    )


async def main(plans: int) -> None:
    async with FakeOpenAI() as fake:
        client = AsyncOpenAI(api_key="sk-bench", base_url=fake.url, max_retries=0, timeout=10.0)
        strategist = OpenAIStrategist(client=client, model="gpt-4o-mini", fallback=TemplateStrategist())
        try:
            print("case              prompt  completion   total  schema_bytes  reserved  ratio")
            anchor = 0.0
            for case in CASES:
                used = []
                for i in range(plans):
                    planned = await strategist.plan(facts(i, case))
                    if planned.generation.outcome != "ok":
                        raise SystemExit(
                            f"{case}: the plan was {planned.generation.outcome}: {planned.generation.error}"
                        )
                    used.append((planned.generation.prompt_tokens, planned.generation.completion_tokens))
                prompt = sum(p for p, _ in used) / plans
                completion = sum(c for _, c in used) / plans
                total = prompt + completion
                anchor = anchor or total
                answer_format = response_format(case)
                messages = [
                    {"role": "system", "content": system_prompt(prompt_version(case), case)},
                    {"role": "user", "content": facts_message(facts(0, case))},
                ]
                name = "none" if case is None else f"{case.count} {case.focus.value}"
                print(
                    f"{name:<16} {prompt:7.0f} {completion:11.0f} {total:7.0f} {len(json.dumps(answer_format)):13d}"
                    f" {prompt_token_bound(messages, answer_format):9d}  ratio: {total / anchor:.2f}"  # type: ignore[arg-type]
                )
        finally:
            await strategist.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=20)
    args = parser.parse_args()
    # One line per plan would bury the table.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(args.plans))
