"""One chat completion under a strict JSON schema, as the planner's strategist and the events
service's reply classifier both make it: the call (bounded in flight, timed and its tokens
counted), the reading of the answer's text, and how a failed answer is kept for audit.

What makes an answer usable (its schema, its guards) and what to do without one stays with
the caller.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from openai import APIConnectionError, APIError, APIStatusError, AsyncOpenAI, omit
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from prometheus_client import Counter, Histogram
from pydantic_core import ErrorDetails

# The client refuses to start without a key; OpenAI-compatible servers reached through
# OPENAI_BASE_URL alone (a local model server, the fake) ignore what it sends.
KEYLESS = "no-key"


def client(*, api_key: str, base_url: str | None, timeout: float, max_retries: int) -> AsyncOpenAI:
    """The client for OPENAI_API_KEY and/or OPENAI_BASE_URL; it retries 429, 5xx and timeouts."""
    return AsyncOpenAI(api_key=api_key or KEYLESS, base_url=base_url, timeout=timeout, max_retries=max_retries)


@dataclass(frozen=True)
class Call:
    """What one request came to: a completion, or why the API gave none."""

    model: str
    # From the request to its end, the wait for a free slot included.
    duration_ms: int
    completion: ChatCompletion | None = None
    error: str = ""
    # The call alone, without the wait for a slot.
    call_seconds: float = 0.0
    # For a call without an answer: whether asking again may answer (a timeout, a lost
    # connection, 408, 409, 429, 5xx, or the server's x-should-retry), and after how many
    # seconds the server asked for (Retry-After), if it did.
    retryable: bool = False
    retry_after: float | None = None

    @property
    def prompt_tokens(self) -> int:
        usage = self.completion.usage if self.completion else None
        return usage.prompt_tokens if usage else 0

    @property
    def completion_tokens(self) -> int:
        usage = self.completion.usage if self.completion else None
        return usage.completion_tokens if usage else 0


class Chat:
    """A model behind an OpenAI-compatible server, at most `concurrency` requests in flight.

    `call_seconds` is a histogram labelled by result (usable, unusable, error) and `tokens` a
    counter labelled by kind (prompt, completion): each service declares its own.
    """

    def __init__(
        self, *, client: AsyncOpenAI, model: str, concurrency: int, call_seconds: Histogram, tokens: Counter
    ) -> None:
        self.client = client
        self.model = model
        self._slots = asyncio.Semaphore(concurrency)
        self._call_seconds = call_seconds
        self._tokens = tokens

    async def aclose(self) -> None:
        await self.client.close()

    async def complete(
        self,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: ResponseFormatJSONSchema,
        *,
        max_completion_tokens: int | None = None,
    ) -> Call:
        """One request. An API error (after the client's own retries) is an answerless Call;
        a cancellation (a deadline, a stop) is timed as an error and goes on up.
        `max_completion_tokens` caps the answer (the API cuts it off, finish_reason "length")."""
        started = time.perf_counter()
        async with self._slots:
            called = time.perf_counter()
            try:
                completion = await self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    response_format=response_format,
                    max_completion_tokens=omit if max_completion_tokens is None else max_completion_tokens,
                )
            except APIError as exc:
                self._call_seconds.labels(result="error").observe(time.perf_counter() - called)
                return Call(
                    self.model,
                    elapsed_ms(started),
                    error=f"{type(exc).__name__}: {exc.message}",
                    retryable=retryable(exc),
                    retry_after=retry_after(exc),
                )
            except asyncio.CancelledError:
                self._call_seconds.labels(result="error").observe(time.perf_counter() - called)
                raise
            call_seconds = time.perf_counter() - called
        call = Call(completion.model or self.model, elapsed_ms(started), completion, call_seconds=call_seconds)
        self._tokens.labels(kind="prompt").inc(call.prompt_tokens)
        self._tokens.labels(kind="completion").inc(call.completion_tokens)
        return call

    def judged(self, call: Call, *, usable: bool) -> None:
        """Time an answered call by whether the caller could use its answer."""
        self._call_seconds.labels(result="usable" if usable else "unusable").observe(call.call_seconds)


# The longest wait a server may ask for and still be asked again, as the openai client has it.
MAX_RETRY_AFTER_SECONDS = 120.0


def retryable(exc: APIError) -> bool:
    """What the openai client itself would retry: not when the server asks for a longer wait
    than MAX_RETRY_AFTER_SECONDS (asking sooner would only be refused again)."""
    if isinstance(exc, APIConnectionError):  # timeouts included
        return True
    if not isinstance(exc, APIStatusError):
        return False
    wait = retry_after(exc)
    if wait is not None and not wait <= MAX_RETRY_AFTER_SECONDS:  # NaN and infinity included
        return False
    should = exc.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def retry_after(exc: APIError) -> float | None:
    """The seconds a Retry-After (or retry-after-ms) header asks for; None without one."""
    if not isinstance(exc, APIStatusError):
        return None
    headers = exc.response.headers
    # Milliseconds first, then seconds; an unreadable one (an HTTP date) is passed over.
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        if (value := headers.get(name)) is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    return None


def answer_text(
    completion: ChatCompletion, *, cut_off: str = "the answer was cut off at the token limit"
) -> tuple[str, str]:
    """The model's text, and why it is no complete answer ("" when it is one): no choices, a
    refusal, or an answer that did not end by itself (`cut_off` says so for the token limit)."""
    if not completion.choices:
        return "", "the answer has no choices"
    choice = completion.choices[0]
    if choice.message.refusal:
        return choice.message.refusal, f"the model refused: {choice.message.refusal}"
    answer = choice.message.content or ""
    if choice.finish_reason == "length":
        return answer, cut_off
    if choice.finish_reason != "stop":
        return answer, f"the answer ended with finish_reason {choice.finish_reason!r}, not 'stop'"
    return answer, ""


def schema_problem(error: ErrorDetails) -> str:
    """One pydantic error of an answer read against its schema, as a line the model can act on."""
    if error["type"] == "json_invalid":
        return f"the answer is not valid JSON: {error['msg']}"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    return f"{path or 'answer'}: {error['msg']}"


def audit_json(answer: str | None) -> dict[str, Any] | None:
    """A failed answer as stored for audit: the JSON object it was, else its raw text."""
    if answer is None:
        return None
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"raw": answer}


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
