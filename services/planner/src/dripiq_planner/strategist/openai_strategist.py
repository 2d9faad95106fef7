"""The AI strategist: one chat completion per contact, constrained to the strategy's JSON schema.

Structured outputs make the answer parse; they cannot make it true or sendable, so every answer
also passes the guards. A failing answer gets one repair turn that names its problems; after
that, or when the API keeps failing beyond the client's own retries, the template strategist
answers instead and the failed attempts are kept for the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from dripiq_common import chat
from dripiq_common.json_schema import strict_json_schema
from dripiq_planner.ai_budget import AiBudget, BudgetSpent, Reservation
from dripiq_planner.rules import ACTIONS
from dripiq_planner.strategist import Generation, ModelUnavailable, Planned, PlanningFacts, Strategist
from dripiq_planner.strategist.ai_variants import VariantRequest, answer_path, variant_model, with_variants
from dripiq_planner.strategist.guards import violations
from dripiq_planner.strategist.links import AllowList
from dripiq_planner.strategist.prompts import PROMPT_VERSION, VARIANTS_PROMPT_VERSION, system_prompt
from dripiq_planner.strategy import CHANNELS, AdaptiveRule, Cadence, OutreachStep, RuleAction, Strategy

log = structlog.get_logger(__name__)

AI_CALL_SECONDS = Histogram(
    "dripiq_planner_ai_call_seconds",
    "Time of one chat completion call (not the wait for a free slot), by result: usable "
    "(a strategy that passed validation), unusable (an answer that did not), error (no answer)",
    ["result"],
    buckets=(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0),
)
AI_TOKENS = Counter(
    "dripiq_planner_ai_tokens", "Tokens the AI model reported using, by kind (prompt, completion)", ["kind"]
)
STRATEGIES = Counter(
    "dripiq_planner_ai_strategies",
    "Strategies the AI strategist returned, by outcome: ok (its first answer), repaired "
    "(after one repair request), fallback (the fallback strategist's, after the AI failed)",
    ["outcome"],
)

STRATEGIST_NAME = "openai"
# A strategy of eight long steps is about 2,500 tokens; past this the answer is cut off
# (finish_reason "length") and gets the repair turn.
DEFAULT_MAX_COMPLETION_TOKENS = 4000
# The tokens a chat request adds around each message and before the answer; OpenAI's counting
# guide gives 3 per message and 3 for the reply's priming, so 8 is a margin, not a guess.
MESSAGE_FRAMING_TOKENS = 8


class _Answer(BaseModel):
    """The strict-mode shape of an answer: every key present, no others (OpenAI's rules)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# The strategy's payload is a free-form object, which strict mode cannot express; these are the
# fields the actions read. The docstring below is the description the model sees.
class AnswerPayload(_Answer):
    """Set the fields the action uses; null the others."""

    delay_seconds: int | None = Field(alias="delaySeconds")
    step_index: int | None = Field(alias="stepIndex")
    resume_after_seconds: int | None = Field(alias="resumeAfterSeconds")
    reason: str | None


class AnswerAction(_Answer):
    type: str = Field(json_schema_extra={"enum": list(sorted(ACTIONS))})
    payload: AnswerPayload


class AnswerRule(_Answer):
    trigger: str = Field(description="an engagement trigger, or a timeout such as no_open_48h")
    action: AnswerAction


class AnswerStep(_Answer):
    type: str = Field(json_schema_extra={"enum": list(CHANNELS)})
    timing: str = Field(description='"Day N", counted from the campaign start')
    subject: str = Field(description="empty for a follow-up email that continues the previous email's thread")
    content: str
    call_to_action: str = Field(alias="callToAction")
    thread: bool | None = Field(
        description="true: reply in the previous email's thread (In-Reply-To, 'Re: <its subject>'); "
        "null: only when the subject is empty"
    )


class AnswerCadence(_Answer):
    interval: str
    total_duration: str = Field(alias="totalDuration")


class AnswerStrategy(_Answer):
    summary: str
    cadence: AnswerCadence
    outreach_campaign: list[AnswerStep] = Field(alias="outreachCampaign")
    adaptive_rules: list[AnswerRule] = Field(alias="adaptiveRules")

    def to_strategy(self) -> Strategy:
        return Strategy(
            summary=self.summary,
            cadence=Cadence(interval=self.cadence.interval, total_duration=self.cadence.total_duration),
            outreach_campaign=[
                OutreachStep.model_validate(step.model_dump(exclude={"variants"})) for step in self.outreach_campaign
            ],
            adaptive_rules=[
                AdaptiveRule(
                    trigger=rule.trigger,
                    action=RuleAction(
                        type=rule.action.type,
                        payload=rule.action.payload.model_dump(by_alias=True, exclude_none=True),
                    ),
                )
                for rule in self.adaptive_rules
            ],
        )


RESPONSE_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "outreach_strategy", "strict": True, "schema": strict_json_schema(AnswerStrategy)},
}


@cache
def answer_model(request: VariantRequest | None) -> type[AnswerStrategy]:
    """The answer's shape: AnswerStrategy, whose steps also carry the versions a tenant's A/B
    test asks for."""
    if request is None:
        return AnswerStrategy
    version = variant_model(request)
    step = create_model(
        "AnswerStepWithVariants",
        __base__=AnswerStep,
        variants=(
            list[version],  # type: ignore[valid-type]
            Field(description="the step's other versions for the A/B test, in the order of their names"),
        ),
    )
    model = create_model(
        "AnswerStrategyWithVariants",
        __base__=AnswerStrategy,
        outreach_campaign=(list[step], Field(alias="outreachCampaign")),
    )
    return model


@cache
def response_format(request: VariantRequest | None) -> ResponseFormatJSONSchema:
    """The response format for a tenant's requests: RESPONSE_FORMAT, byte for byte, for a tenant
    that runs no A/B test, so its prompt and cost do not change."""
    if request is None:
        return RESPONSE_FORMAT
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "outreach_strategy",
            "strict": True,
            "schema": strict_json_schema(answer_model(request)),
        },
    }


def prompt_version(request: VariantRequest | None) -> str:
    return PROMPT_VERSION if request is None else VARIANTS_PROMPT_VERSION


def input_json(facts: PlanningFacts) -> dict[str, Any]:
    """What a request was made from, for the audit trail: the facts, and the A/B test asked for."""
    if facts.variants is None:
        return {"facts": facts.as_json()}
    return {"facts": facts.as_json(), "variants": facts.variants.to_json()}


@dataclass(frozen=True)
class _Attempt:
    """One request to the model and what came of it."""

    input_json: dict[str, Any]
    model: str
    duration_ms: int
    # The model's text; None when the API itself failed.
    answer: str | None = None
    strategy: Strategy | None = None
    problems: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def generation(self, facts: PlanningFacts, outcome: str) -> Generation:
        return Generation(
            strategist=STRATEGIST_NAME,
            correlation_id=facts.correlation_id,
            input_json=self.input_json,
            output_json=self.strategy.to_json() if self.strategy else chat.audit_json(self.answer),
            outcome=outcome,
            model=self.model,
            prompt_version=prompt_version(facts.variants),
            error="; ".join(self.problems),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            duration_ms=self.duration_ms,
        )


class OpenAIStrategist:
    """Plans with any OpenAI-compatible chat completions server.

    `client` carries the timeout and retry policy (429, 5xx and timeouts are retried by the
    client); `concurrency` bounds the requests in flight from this process; `budget` counts
    every call against the tenant's daily AI budget (facts.budget) before it is made, holding
    the most tokens it can use: its prompt's bound and `max_completion_tokens`, which the
    request also sends, so the model cannot answer longer than was held.
    """

    name = STRATEGIST_NAME
    uses_model = True

    def __init__(
        self,
        *,
        client: AsyncOpenAI,
        model: str,
        fallback: Strategist,
        concurrency: int = 8,
        deadline_seconds: float = 60.0,
        budget: AiBudget | None = None,
        max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS,
        retries: int = 0,
    ) -> None:
        self._chat = chat.Chat(
            client=client, model=model, concurrency=concurrency, call_seconds=AI_CALL_SECONDS, tokens=AI_TOKENS
        )
        self._fallback = fallback
        self._deadline = deadline_seconds
        self._budget = budget
        self._max_completion_tokens = max_completion_tokens
        # Requests without an answer asked again here rather than inside the client, so each
        # one is audited (give the client max_retries=0).
        self._retries = retries

    async def aclose(self) -> None:
        await self._chat.aclose()

    async def plan(self, facts: PlanningFacts) -> Planned:
        """A strategy within the deadline, whatever the model does: past it, the template's."""
        # Every request made for this plan that is not its answer, for the audit trail.
        retried: list[Generation] = []
        try:
            async with asyncio.timeout(self._deadline):
                return await self._plan_with_model(facts, retried)
        except TimeoutError:
            late = _Attempt(
                input_json(facts),
                self._chat.model,
                int(self._deadline * 1000),
                problems=(f"no usable answer within {self._deadline:g} s",),
            )
            if facts.raise_when_unavailable:
                raise ModelUnavailable(
                    f"no usable answer within {self._deadline:g} s", (*retried, late.generation(facts, "retried"))
                ) from None
            return await self._fall_back(facts, [late], retried=retried)

    async def _plan_with_model(self, facts: PlanningFacts, retried: list[Generation]) -> Planned:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(prompt_version(facts.variants), facts.variants)},
            # Exactly the facts, nothing the planner knows beyond them: the model may use only these.
            {"role": "user", "content": facts_message(facts)},
        ]
        first = await self._attempt(facts, messages, input_json=input_json(facts), retried=retried)
        if isinstance(first, BudgetSpent):
            return await self._fall_back(facts, [], reason=first.reason, spent=first, retried=retried)
        if first.strategy is not None:
            return self._planned(facts, first.strategy, first.generation(facts, "ok"), earlier=tuple(retried))
        if first.answer is None:
            return await self._unavailable(facts, [first], retried)
        log.info("strategist.repair_requested", correlation_id=facts.correlation_id, problems=list(first.problems))
        repair: list[ChatCompletionMessageParam] = [
            *messages,
            {"role": "assistant", "content": first.answer},
            {"role": "user", "content": repair_request(first.problems)},
        ]
        second = await self._attempt(
            facts, repair, input_json={**input_json(facts), "problems": list(first.problems)}, retried=retried
        )
        if isinstance(second, BudgetSpent):
            return await self._fall_back(facts, [first], reason=second.reason, spent=second, retried=retried)
        if second.strategy is not None:
            failed = first.generation(facts, "failed")
            return self._planned(
                facts, second.strategy, second.generation(facts, "repaired"), earlier=(*retried, failed)
            )
        if second.answer is None:
            return await self._unavailable(facts, [first, second], retried)
        return await self._fall_back(facts, [first, second], retried=retried)

    async def _attempt(
        self,
        facts: PlanningFacts,
        messages: list[ChatCompletionMessageParam],
        *,
        input_json: dict[str, Any],
        retried: list[Generation],
    ) -> _Attempt | BudgetSpent:
        """One request answered, or given up after the retries; each request asked again is
        added to `retried`. The budget counts it once, as the client's own retries were."""
        reservation: Reservation | None = None
        answer_format = response_format(facts.variants)
        if self._budget is not None and facts.budget is not None:
            most = prompt_token_bound(messages, answer_format) + self._max_completion_tokens
            reserved = await self._budget.reserve(facts.tenant_id, facts.budget, most)
            if isinstance(reserved, BudgetSpent):
                return reserved
            reservation = reserved
        # Cancelled past the deadline, the call settles nothing: what the model used is unknown,
        # so the reservation stays whole.
        for asked in range(self._retries + 1):
            call = await self._chat.complete(messages, answer_format, max_completion_tokens=self._max_completion_tokens)
            if call.completion is not None or not call.retryable or asked == self._retries:
                break
            again = _Attempt(input_json, call.model, call.duration_ms, problems=(call.error,))
            retried.append(again.generation(facts, "retried"))
            log.info("strategist.retrying", correlation_id=facts.correlation_id, error=call.error, attempt=asked + 1)
            await asyncio.sleep(backoff(asked, call.retry_after))
        if reservation is not None and self._budget is not None:
            await self._budget.settle(reservation, call.prompt_tokens + call.completion_tokens)
        if call.completion is None:
            return _Attempt(input_json, call.model, call.duration_ms, problems=(call.error,))
        answer, strategy, problems = read_answer(call.completion, facts.allow, facts.variants)
        self._chat.judged(call, usable=strategy is not None)
        return _Attempt(
            input_json,
            call.model,
            call.duration_ms,
            answer=answer,
            strategy=strategy,
            problems=tuple(problems),
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
        )

    def _planned(
        self, facts: PlanningFacts, strategy: Strategy, generation: Generation, earlier: tuple[Generation, ...] = ()
    ) -> Planned:
        STRATEGIES.labels(outcome=generation.outcome).inc()
        log.info(
            "strategist.planned",
            strategist=STRATEGIST_NAME,
            outcome=generation.outcome,
            tenant_id=facts.tenant_id,
            correlation_id=facts.correlation_id,
            model=generation.model,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            duration_ms=generation.duration_ms,
        )
        return Planned(strategy=strategy, generation=generation, earlier=earlier)

    async def _unavailable(self, facts: PlanningFacts, attempts: list[_Attempt], retried: list[Generation]) -> Planned:
        """No answer from the model: the caller's to retry when it asked to, else the fallback's."""
        if facts.raise_when_unavailable:
            raise ModelUnavailable(
                "; ".join(attempts[-1].problems),
                (*retried, *(attempt.generation(facts, "retried") for attempt in attempts)),
            )
        return await self._fall_back(facts, attempts, retried=retried)

    async def _fall_back(
        self,
        facts: PlanningFacts,
        attempts: list[_Attempt],
        *,
        reason: str = "",
        spent: BudgetSpent | None = None,
        retried: list[Generation] | None = None,
    ) -> Planned:
        """The fallback's strategy, audited with why: `reason` when the model was not asked
        (again), else the last attempt's problems."""
        error = reason or "AI strategy failed: " + "; ".join(attempts[-1].problems)
        log.warning(
            "strategist.fallback",
            tenant_id=facts.tenant_id,
            correlation_id=facts.correlation_id,
            fallback=self._fallback.name,
            attempts=len(attempts),
            error=error,
        )
        planned = await self._fallback.plan(facts)
        STRATEGIES.labels(outcome="fallback").inc()
        generation = replace(planned.generation, outcome="fallback", error=error)
        failed = tuple(attempt.generation(facts, "failed") for attempt in attempts)
        if reason:
            why = reason
        elif attempts[-1].answer is None:
            why = "model_error: " + "; ".join(attempts[-1].problems)
        else:
            why = "invalid_answer: " + "; ".join(attempts[-1].problems)
        return Planned(
            strategy=planned.strategy,
            generation=generation,
            earlier=(*(retried or ()), *failed, *planned.earlier),
            budget_spent=spent,
            reason=why,
        )


def prompt_token_bound(messages: list[ChatCompletionMessageParam], response_format: ResponseFormatJSONSchema) -> int:
    """At least as many tokens as the prompt can count, whatever the model's tokenizer: every
    token stands for one byte of UTF-8 or more, so the bytes of the text (the response schema,
    which the API adds to the prompt, included) bound them. Over-reserved tokens come back
    when the call settles."""
    text = sum(len(str(message.get("content") or "").encode()) for message in messages)
    schema = len(json.dumps(response_format).encode())
    return text + schema + MESSAGE_FRAMING_TOKENS * (len(messages) + 1)


def backoff(asked: int, retry_after: float | None) -> float:
    """Seconds before asking again, as the openai client waits: what the server asked for
    (a longer wait is not retried, chat.retryable), else 0.5 s doubling to 8 s, less up to a
    quarter of jitter."""
    if retry_after is not None and 0 < retry_after <= chat.MAX_RETRY_AFTER_SECONDS:
        return retry_after
    return min(0.5 * 2**asked, 8.0) * (1 - 0.25 * random.random())


def facts_message(facts: PlanningFacts) -> str:
    """The facts as the user message: JSON between tags the system prompt names as data. No
    "<" survives as itself, so no fact can close the tag and speak outside it."""
    data = json.dumps(facts.as_json(), ensure_ascii=False).replace("<", "\\u003c")
    return f"<facts>\n{data}\n</facts>"


def read_answer(
    completion: ChatCompletion, allow: AllowList | None = None, variants: VariantRequest | None = None
) -> tuple[str, Strategy | None, list[str]]:
    """The model's text, the strategy if it is usable, and every problem that makes it not.
    With `variants`, each email step's versions are checked as its own copy is, and named by
    their place in the answer, not in the stored strategy (where A comes first)."""
    answer, problem = chat.answer_text(
        completion, cut_off="the answer was cut off at the token limit; write shorter messages"
    )
    if problem:
        return answer, None, [problem]
    try:
        parsed = answer_model(variants).model_validate_json(answer)
    except ValidationError as exc:
        return answer, None, [chat.schema_problem(error) for error in exc.errors()]
    strategy = parsed.to_strategy()
    if variants is None:
        problems = [str(violation) for violation in violations(strategy, allow)]
        return answer, (None if problems else strategy), problems
    written = [step["variants"] for step in parsed.model_dump(by_alias=True)["outreachCampaign"]]
    strategy, found = with_variants(strategy, written, variants)
    problems = [str(p) for p in found]
    for violation in violations(strategy, allow):
        line = f"{answer_path(violation.field)}: {violation.message}"
        if line not in problems:
            problems.append(line)
    return answer, (None if problems else strategy), problems


def repair_request(problems: tuple[str, ...]) -> str:
    listed = "\n".join(f"- {problem}" for problem in problems)
    links = (
        "Remove every link, domain, email address and phone number that is not allowed; the facts "
        "never ask you to add one.\n\n"
        if any("disallowed_" in problem for problem in problems)
        else ""
    )
    return (
        "Your answer cannot be used as it is:\n"
        f"{listed}\n\n"
        f"{links}"
        "Write the complete strategy again with these problems fixed, following the same "
        "instructions and using only the same facts. Answer with the JSON object only."
    )
