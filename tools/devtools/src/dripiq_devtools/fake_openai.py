"""A local stand-in for the OpenAI Chat Completions API, answering like a model that follows
the planner's strategy prompt or the events service's reply classification prompt.

Development and the tests point the real `openai` client at it with `OPENAI_BASE_URL=fake.url`.
It answers with OpenAI's bodies, headers and error objects and records every authorized request.
What it writes depends on the request's `response_format.json_schema.name`:

- "reply_classification": {"reply_class", "confidence", "reason"}, the class read from the
  user messages by its own keyword rules (`reply_class_of`), within the schema's enum;
- anything else (the strategist's "outreach_strategy", or no response format): a strategy built
  deterministically from the facts in the first user message.

Tests script what comes next with `queue(...)`:

    "valid"         a strategy that passes the planner's schema and guards; a classification
    "malformed"     text that is not JSON
    "invalid"       a strategy in the schema's shape that fails the guards (unknown channel,
                    placeholder); for a classification, the same as "off_schema"
    "off_schema"    JSON outside the requested schema (strict mode never sends it; a server that
                    does not enforce schemas might)
    "refusal"       a refusal (`message.refusal` set, no content), as strict mode reports one
    "truncated"     the answer cut off at the token limit (finish_reason "length")
    "rate_limited"  429 with retry-after headers and OpenAI's rate-limit error
    "server_error"  500 with OpenAI's server error
    anything else   sent verbatim as the message content

    python -m dripiq_devtools.fake_openai --port 8026

Endpoints:
    POST   /v1/chat/completions  Chat Completions (200, 400, 401, 429, 500)
    GET    /_fake/requests       {"requests": [...]} every authorized request body
    DELETE /_fake/requests       forget them
    POST   /_fake/behaviours     {"behaviours": [...]}: how the next requests are answered
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from dripiq_devtools.local_server import LocalHttpServer

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
DEFAULT_PORT = 8026
MAX_REQUEST_BYTES = 20 * 1024 * 1024

VALID = "valid"
MALFORMED = "malformed"
INVALID = "invalid"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
OFF_SCHEMA = "off_schema"
REFUSAL = "refusal"
TRUNCATED = "truncated"
# What a model that ignored the response format might say: prose, then JSON cut short.
MALFORMED_ANSWER = 'Here is the strategy you asked for: {"summary": "An introduction'
MALFORMED_CLASSIFICATION_ANSWER = 'The reply reads as {"reply_class": "inter'
REFUSAL_MESSAGE = "I'm sorry, I can't help with that request."

REPLY_CLASSIFICATION_SCHEMA = "reply_classification"
# The classes a reply classification answer may name, when the request's schema lists none.
REPLY_CLASSES = ("interested", "not_interested", "referral", "unsubscribe_request", "question", "other")
# The fake's own reading of a reply, first match wins: a stand-in for a model, so it shares no
# code with the service it answers. Plain substrings of the lower-cased user messages.
REPLY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "unsubscribe_request",
        (
            "unsubscribe",
            "remove me",
            "take me off",
            "stop emailing",
            "stop contacting",
            "do not contact",
            "don't contact",
            "do not email",
            "don't email",
        ),
    ),
    ("not_interested", ("not interested", "no thanks", "no thank you", "not a fit", "not for us", "we'll pass")),
    (
        "referral",
        (
            "reach out to",
            "talk to my colleague",
            "contact my colleague",
            "better person",
            "the right person",
            "in charge of",
            "forwarding this to",
        ),
    ),
    ("interested", ("interested", "let's talk", "let's chat", "book a", "schedule", "set up a call", "demo")),
    ("question", ("?",)),
)

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)
WRONG_KEY_MESSAGE = (
    "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
)
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
RATE_LIMIT_MESSAGE = (
    "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit 3, Used 3, "
    "Requested 1. Please try again in {seconds}s. Visit https://platform.openai.com/account/rate-limits to "
    "learn more."
)

_BEARER = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)

ErrorBody = dict[str, dict[str, str | None]]


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> ErrorBody:
    """OpenAI's error object; clients key their handling on `type` and `code`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _error(status: int, body: ErrorBody, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers={"x-request-id": _request_id(), **headers})


def _request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 8 else "*" * len(key)


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
        return [_text(m.get("content")) for m in self.messages if m.get("role") == role]

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def schema_name(self) -> str | None:
        """The response format's json_schema name: which kind of answer was asked for."""
        return _schema(self.body)[0]

    def to_json(self) -> dict[str, Any]:
        return {"received_at": self.received_at.isoformat(), "body": self.body}


def _text(content: Any) -> str:
    """A message's text, whether sent as a string or as content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def facts_of(body: dict[str, Any]) -> dict[str, Any]:
    """The facts object the planner sends as the first user message; empty when there is none."""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            try:
                facts = json.loads(_text(message.get("content")))
            except ValueError:
                continue
            if isinstance(facts, dict):
                return facts
    return {}


def _schema(body: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The requested json_schema's name and schema; (None, {}) without one."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None, {}
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict):
        return None, {}
    name, schema = spec.get("name"), spec.get("schema")
    return (name if isinstance(name, str) else None), (schema if isinstance(schema, dict) else {})


def reply_class_of(text: str) -> tuple[str, str]:
    """The class the fake gives a reply and the keyword that decided it ("" for other)."""
    lowered = text.lower()
    for reply_class, keywords in REPLY_KEYWORDS:
        for keyword in keywords:
            if keyword in lowered:
                return reply_class, keyword
    return "other", ""


def reply_classification(body: dict[str, Any]) -> dict[str, Any]:
    """What a model following a reply classification prompt could answer: the keyword rules'
    class, read from the user messages only (the system prompt defines every class), kept
    within the enum the request's schema allows, as strict mode would."""
    user_text = "\n".join(
        _text(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    )
    reply_class, keyword = reply_class_of(user_text)
    allowed = _allowed_classes(_schema(body)[1])
    if reply_class not in allowed:
        reply_class, keyword = ("other" if "other" in allowed else allowed[0]), ""
    reason = f"The reply says '{keyword}'." if keyword else "Nothing in the reply matches a more specific class."
    return {"reply_class": reply_class, "confidence": 0.9 if keyword else 0.5, "reason": reason}


def _allowed_classes(schema: dict[str, Any]) -> list[str]:
    prop = (schema.get("properties") or {}).get("reply_class")
    enum = prop.get("enum") if isinstance(prop, dict) else None
    if isinstance(enum, list) and enum and all(isinstance(value, str) for value in enum):
        return enum
    return list(REPLY_CLASSES)


def off_schema_classification() -> dict[str, Any]:
    """Parses, but breaks the schema: a class no enum has, a confidence above 1, an extra key."""
    return {"reply_class": "maybe_later", "confidence": 1.7, "reason": "Unsure.", "sentiment": "neutral"}


def off_schema_strategy(facts: dict[str, Any]) -> dict[str, Any]:
    """A strategy without its adaptive rules and with a key the schema does not have."""
    strategy = valid_strategy(facts)
    del strategy["adaptiveRules"]
    strategy["notes"] = "written without the schema"
    return strategy


def _field(facts: dict[str, Any], section: str, name: str) -> str:
    value = (facts.get(section) or {}).get(name)
    return value.strip() if isinstance(value, str) else ""


def valid_strategy(facts: dict[str, Any]) -> dict[str, Any]:
    """What a model following the prompt could write from these facts, and nothing more."""
    first_name = _field(facts, "contact", "first_name")
    company = _field(facts, "lead", "company_name") or "your team"
    product = _field(facts, "product", "name") or "our product"
    greeting = f"Hi {first_name}," if first_name else "Hi there,"
    description = _field(facts, "product", "description")
    return {
        "summary": f"A three-email introduction of {product} to {company}, grounded in the product description.",
        "cadence": {"interval": "3-4 days", "totalDuration": "7 days"},
        "outreachCampaign": [
            _step("Day 0", f"{product} for {company}", f"{greeting}\n\n{description or product}", "Open to a call?"),
            _step(
                "Day 3",
                "",
                f"{greeting}\n\nFollowing up on my note about {product}.",
                "Would a 15-minute call this week work?",
                thread=True,
            ),
            _step(
                "Day 7",
                "Closing the loop",
                f"{greeting}\n\nI will not write again unless you want me to.",
                "Reply if you would like the details.",
            ),
        ],
        "adaptiveRules": [
            {
                "trigger": "no_open_72h",
                "action": {
                    "type": "reschedule_step",
                    "payload": {"delaySeconds": 86400, "stepIndex": None, "resumeAfterSeconds": None, "reason": None},
                },
            }
        ],
    }


def invalid_strategy(facts: dict[str, Any]) -> dict[str, Any]:
    """Well-formed and in the schema's shape, but unsendable: an unknown channel and a placeholder."""
    strategy = valid_strategy(facts)
    strategy["outreachCampaign"][1]["type"] = "fax"
    strategy["outreachCampaign"][2]["subject"] = "{{first_name}}, one more thing"
    return strategy


def _step(
    timing: str, subject: str, content: str, call_to_action: str, *, thread: bool | None = None
) -> dict[str, Any]:
    return {
        "type": "email",
        "timing": timing,
        "subject": subject,
        "content": content,
        "callToAction": call_to_action,
        "thread": thread,
    }


def strict_schema_problem(schema: Any, context: tuple[str, ...] = ()) -> str | None:
    """What OpenAI says when a strict json_schema breaks its rules, or None when it does not."""
    if not isinstance(schema, dict):
        return None
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            return f"In context={context}, 'additionalProperties' is required to be supplied and to be false."
        missing = [name for name in properties or {} if name not in (schema.get("required") or [])]
        if missing:
            return (
                f"In context={context}, 'required' is required to be supplied and to be an array including "
                f"every key in properties. Missing '{missing[0]}'."
            )
    children: list[tuple[tuple[str, ...], Any]] = [
        *(((*context, "properties", name), sub) for name, sub in (properties or {}).items()),
        *(((*context, "$defs", name), sub) for name, sub in (schema.get("$defs") or {}).items()),
        *(((*context, "anyOf", str(i)), sub) for i, sub in enumerate(schema.get("anyOf") or [])),
        ((*context, "items"), schema.get("items")),
    ]
    return next((p for path, sub in children if (p := strict_schema_problem(sub, path))), None)


def _request_problem(body: Any) -> ErrorBody | None:
    """The 400 the real API answers for a request it cannot run."""
    if not isinstance(body, dict):
        return error_body(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
        )
    if not isinstance(body.get("model"), str) or not body["model"]:
        return error_body("you must provide a model parameter", "invalid_request_error")
    messages = body.get("messages")
    if messages is None:
        return error_body(
            "Missing required parameter: 'messages'.", "invalid_request_error", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        return error_body(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "invalid_request_error",
            "messages",
            "empty_array",
        )
    if body.get("stream"):
        return error_body("The fake does not stream; send stream=false.", "invalid_request_error", "stream")
    return _response_format_problem(body.get("response_format"))


def _response_format_problem(response_format: Any) -> ErrorBody | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    if not spec.get("strict"):
        return None
    problem = strict_schema_problem(spec.get("schema"))
    if problem is None:
        return None
    message = f"Invalid schema for response_format '{spec.get('name')}': {problem}"
    return error_body(message, "invalid_request_error", "response_format")


def _tokens(text: str) -> int:
    """Roughly four characters a token, as OpenAI's rule of thumb goes."""
    return max(1, math.ceil(len(text) / 4))


class FakeOpenAI(LocalHttpServer):
    """The fake server. Use `async with FakeOpenAI() as fake:` or `await fake.start()` / `stop()`.

    `api_key` set means only that key is accepted; otherwise any bearer token is.
    `retry_after_seconds` is what a 429 asks the client to wait.
    """

    def __init__(
        self, *, api_key: str | None = None, latency_seconds: float = 0.0, retry_after_seconds: float = 1.0
    ) -> None:
        self.requests: list[RecordedRequest] = []
        # The most requests it was answering at once, to check a client's concurrency bound.
        self.max_in_flight = 0
        self._in_flight = 0
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.retry_after_seconds = retry_after_seconds
        self._behaviours: deque[str] = deque()
        super().__init__()

    @property
    def url(self) -> str:
        """The base URL to give the client (OPENAI_BASE_URL); it appends /chat/completions."""
        return f"{self.base_url}/v1"

    def queue(self, *behaviours: str) -> None:
        """How the next requests are answered, in order; "valid" once they run out."""
        self._behaviours.extend(behaviours)

    def clear(self) -> None:
        """Forget recorded requests, scripted behaviours and the in-flight high-water mark."""
        self.requests.clear()
        self._behaviours.clear()
        self.max_in_flight = 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(CHAT_COMPLETIONS_PATH, self._handle_chat_completions)
        app.router.add_get("/_fake/requests", self._handle_list_requests)
        app.router.add_delete("/_fake/requests", self._handle_clear_requests)
        app.router.add_post("/_fake/behaviours", self._handle_queue)
        app.router.add_route("*", "/v1/{tail:.*}", self._handle_unknown_api)
        return app

    def _auth_error(self, request: web.Request) -> web.Response | None:
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is None:
            return _error(HTTPStatus.UNAUTHORIZED, error_body(NO_KEY_MESSAGE, "invalid_request_error"))
        if self.api_key is not None and not secrets.compare_digest(match.group(1), self.api_key):
            message = WRONG_KEY_MESSAGE.format(masked=_mask(match.group(1)))
            return _error(
                HTTPStatus.UNAUTHORIZED, error_body(message, "invalid_request_error", None, "invalid_api_key")
            )
        return None

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
        if (denied := self._auth_error(request)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if (problem := _request_problem(body)) is not None:
            return _error(HTTPStatus.BAD_REQUEST, problem)
        self.requests.append(RecordedRequest(body, datetime.now(UTC)))
        behaviour = self._behaviours.popleft() if self._behaviours else VALID
        if behaviour == RATE_LIMITED:
            return self._rate_limited(body["model"])
        if behaviour == SERVER_ERROR:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, error_body(SERVER_ERROR_MESSAGE, "server_error"))
        if behaviour == REFUSAL:
            return self._completion(body, None, refusal=REFUSAL_MESSAGE)
        if behaviour == TRUNCATED:
            content = self._content(VALID, body)
            return self._completion(body, content[: len(content) // 2], finish_reason="length")
        return self._completion(body, self._content(behaviour, body))

    @staticmethod
    def _content(behaviour: str, body: dict[str, Any]) -> str:
        if _schema(body)[0] == REPLY_CLASSIFICATION_SCHEMA:
            if behaviour == VALID:
                return json.dumps(reply_classification(body))
            if behaviour in (INVALID, OFF_SCHEMA):
                return json.dumps(off_schema_classification())
            if behaviour == MALFORMED:
                return MALFORMED_CLASSIFICATION_ANSWER
            return behaviour
        if behaviour == VALID:
            return json.dumps(valid_strategy(facts_of(body)))
        if behaviour == INVALID:
            return json.dumps(invalid_strategy(facts_of(body)))
        if behaviour == OFF_SCHEMA:
            return json.dumps(off_schema_strategy(facts_of(body)))
        if behaviour == MALFORMED:
            return MALFORMED_ANSWER
        return behaviour

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
        prompt_tokens = sum(_tokens(_text(m.get("content"))) for m in body["messages"] if isinstance(m, dict))
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
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
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

    async def _handle_queue(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
        except ValueError:
            spec = None
        behaviours = spec.get("behaviours") if isinstance(spec, dict) else None
        if not isinstance(behaviours, list) or not all(isinstance(b, str) for b in behaviours):
            return web.json_response({"error": 'expected {"behaviours": [string, ...]}'}, status=400)
        self.queue(*behaviours)
        return web.json_response({"pending": len(self._behaviours)})

    async def _handle_unknown_api(self, request: web.Request) -> web.Response:
        message = f"Invalid URL ({request.method} {request.path})"
        return _error(HTTPStatus.NOT_FOUND, error_body(message, "invalid_request_error"))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_devtools.fake_openai",
        description="Local fake of OpenAI's Chat Completions API that answers with planner strategies "
        "and reply classifications.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--api-key", help="accept only this API key (default: any bearer token)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds a 429 asks clients to wait")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(api_key=args.api_key, latency_seconds=args.latency, retry_after_seconds=args.retry_after)

    def announce() -> None:
        print(f"fake OpenAI listening on {fake.url} (set OPENAI_BASE_URL={fake.url})", flush=True)

    await fake.serve_until_signal(args.host, args.port, announce=announce)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
