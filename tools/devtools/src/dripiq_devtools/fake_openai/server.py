"""The fake OpenAI server: its routes, the requests it recorded, the behaviours queued for the next
ones, and Chat Completions' answers (200, 400, 401, 429, 500) with OpenAI's headers and usage.

    POST   /v1/chat/completions  Chat Completions (200, 400, 401, 429, 500)
    GET    /_fake/requests       {"requests": [...]} every authorized request body
    DELETE /_fake/requests       forget them
    POST   /_fake/behaviours     {"behaviours": [...], "default": "..."}: how the next requests
                                 are answered, and (optional) how every one after them is
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from dripiq_devtools.fake_openai.behaviours import RATE_LIMITED, REFUSAL, SERVER_ERROR, TRUNCATED, VALID
from dripiq_devtools.fake_openai.replies import REFUSAL_MESSAGE, content_for, requested_schema, text_of
from dripiq_devtools.fake_openai.validation import ErrorBody, auth_problem, error_body, request_problem
from dripiq_devtools.local_server import LocalHttpServer

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MAX_REQUEST_BYTES = 20 * 1024 * 1024
# How the fake counts tokens (OpenAI's rule of thumb).
CHARS_PER_TOKEN = 4

SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
RATE_LIMIT_MESSAGE = (
    "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, "
    "Requested 1. Please try again in {seconds}s. Visit https://platform.openai.com/account/rate-limits to "
    "learn more."
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One authorized request, as a test would want to assert on it."""

    body: dict[str, Any]
    received_at: datetime

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    def texts(self, role: str) -> list[str]:
        """The text of every message with `role`, in order."""
        return [text_of(m.get("content")) for m in self.messages if m.get("role") == role]

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def schema_name(self) -> str | None:
        """The response format's json_schema name: which kind of answer was asked for."""
        return requested_schema(self.body)[0]

    def to_json(self) -> dict[str, Any]:
        return {"received_at": self.received_at.isoformat(), "body": self.body}


class FakeOpenAI(LocalHttpServer):
    """The fake server. Use `async with FakeOpenAI() as fake:` or `await fake.start()` / `stop()`.

    `api_key` set means only that key is accepted; otherwise any bearer token is.
    `retry_after_seconds` is what a 429 asks the client to wait.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency_seconds: float = 0.0,
        retry_after_seconds: float = 1.0,
        default_behaviour: str = VALID,
    ) -> None:
        self.requests: list[RecordedRequest] = []
        # The most requests it was answering at once, to check a client's concurrency bound.
        self.max_in_flight = 0
        self._in_flight = 0
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.retry_after_seconds = retry_after_seconds
        self._behaviours: deque[str] = deque()
        # How a request is answered once the queue is empty.
        self.default_behaviour = default_behaviour
        super().__init__()

    @property
    def url(self) -> str:
        """The base URL to give the client (OPENAI_BASE_URL); it appends /chat/completions."""
        return f"{self.base_url}/v1"

    def queue(self, *behaviours: str) -> None:
        """How the next requests are answered, in order; `default_behaviour` once they run out."""
        self._behaviours.extend(behaviours)

    def clear(self) -> None:
        """Forget recorded requests, scripted behaviours (the default back to "valid") and the
        in-flight high-water mark."""
        self.requests.clear()
        self._behaviours.clear()
        self.default_behaviour = VALID
        self.max_in_flight = 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(CHAT_COMPLETIONS_PATH, self._handle_chat_completions)
        app.router.add_get("/_fake/requests", self._handle_list_requests)
        app.router.add_delete("/_fake/requests", self._handle_clear_requests)
        app.router.add_post("/_fake/behaviours", self._handle_queue)
        app.router.add_post("/_fake/latency", self._handle_latency)
        app.router.add_route("*", "/v1/{tail:.*}", self._handle_unknown_api)
        return app

    async def _handle_chat_completions(self, request: web.Request) -> web.Response:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency_seconds > 0:
                await asyncio.sleep(self.latency_seconds)
            return await self._answer(request)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        if (denied := auth_problem(request.headers.get("Authorization", ""), self.api_key)) is not None:
            return _error(HTTPStatus.UNAUTHORIZED, denied)
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if (problem := request_problem(body)) is not None:
            return _error(HTTPStatus.BAD_REQUEST, problem)
        self.requests.append(RecordedRequest(body, datetime.now(UTC)))
        behaviour = self._behaviours.popleft() if self._behaviours else self.default_behaviour
        if behaviour == RATE_LIMITED:
            return self._rate_limited(body["model"])
        if behaviour == SERVER_ERROR:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, error_body(SERVER_ERROR_MESSAGE, "server_error"))
        if behaviour == REFUSAL:
            return self._completion(body, None, refusal=REFUSAL_MESSAGE)
        if behaviour == TRUNCATED:
            content = content_for(VALID, body)
            return self._completion(body, content[: len(content) // 2], finish_reason="length")
        content, finish_reason = _within_limit(body, content_for(behaviour, body))
        return self._completion(body, content, finish_reason=finish_reason)

    def _rate_limited(self, model: str) -> web.Response:
        wait = self.retry_after_seconds
        message = RATE_LIMIT_MESSAGE.format(model=model, seconds=f"{wait:g}")
        return _error(
            HTTPStatus.TOO_MANY_REQUESTS,
            error_body(message, "requests", None, "rate_limit_exceeded"),
            **{
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(int(wait * 1000)),
                "x-ratelimit-limit-requests": "3",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{wait:g}s",
            },
        )

    @staticmethod
    def _completion(
        body: dict[str, Any], content: str | None, *, refusal: str | None = None, finish_reason: str = "stop"
    ) -> web.Response:
        prompt_tokens = sum(_tokens(text_of(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
        completion_tokens = _tokens(content if content is not None else refusal or "")
        completion = {
            "id": f"chatcmpl-{secrets.token_urlsafe(21)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        headers = {"x-request-id": _request_id(), "openai-processing-ms": "1"}
        return web.json_response(completion, headers=headers)

    async def _handle_list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_json() for r in self.requests]})

    async def _handle_clear_requests(self, _request: web.Request) -> web.Response:
        cleared = len(self.requests)
        self.requests.clear()
        return web.json_response({"cleared": cleared})

    async def _handle_latency(self, request: web.Request) -> web.Response:
        """{"seconds": S}: wait S seconds (0 to 60) before each answer from now on."""
        try:
            seconds = (await request.json()).get("seconds")
        except (ValueError, AttributeError):
            seconds = None
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            return web.json_response({"error": 'expected {"seconds": a number from 0 to 60}'}, status=400)
        self.latency_seconds = float(seconds)
        return web.json_response({"latency_seconds": self.latency_seconds})

    async def _handle_queue(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            spec = None
        behaviours = spec.get("behaviours", []) if isinstance(spec, dict) else None
        default = spec.get("default") if isinstance(spec, dict) else None
        if (
            not isinstance(behaviours, list)
            or not all(isinstance(b, str) for b in behaviours)
            or (default is not None and not isinstance(default, str))
        ):
            return web.json_response(
                {"error": 'expected {"behaviours": [string, ...], "default": string (optional)}'}, status=400
            )
        self.queue(*behaviours)
        if default is not None:
            self.default_behaviour = default
        return web.json_response({"pending": len(self._behaviours)})

    async def _handle_unknown_api(self, request: web.Request) -> web.Response:
        message = f"Invalid URL ({request.method} {request.path})"
        return _error(HTTPStatus.NOT_FOUND, error_body(message, "invalid_request_error"))


def _error(status: int, body: ErrorBody, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers={"x-request-id": _request_id(), **headers})


def _request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def _within_limit(body: dict[str, Any], content: str) -> tuple[str, str]:
    """The answer as the API gives it under the request's `max_completion_tokens` (or the older
    `max_tokens`): cut off at the limit, with finish_reason "length", when it is longer."""
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and _tokens(content) > limit:
        return content[: limit * CHARS_PER_TOKEN], "length"
    return content, "stop"


def _tokens(text: str) -> int:
    """Roughly four characters a token, as OpenAI's rule of thumb goes."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
