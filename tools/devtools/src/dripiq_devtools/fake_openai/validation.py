"""Request validation: what the real Chat Completions API refuses (a missing or wrong key, a body
it cannot run, a strict json_schema that breaks OpenAI's rules), in OpenAI's error objects."""

from __future__ import annotations

import re
import secrets
from typing import Any

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)
WRONG_KEY_MESSAGE = (
    "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
)

_BEARER = re.compile(r"Bearer\s+(\S+)\s*", re.IGNORECASE)

ErrorBody = dict[str, dict[str, str | None]]


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> ErrorBody:
    """OpenAI's error object; clients key their handling on `type` and `code`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 8 else "*" * len(key)


def auth_problem(authorization: str, api_key: str | None) -> ErrorBody | None:
    """The 401 body for this Authorization header: none given, or not `api_key` when one is set."""
    match = _BEARER.fullmatch(authorization)
    if match is None:
        return error_body(NO_KEY_MESSAGE, "invalid_request_error")
    if api_key is not None and not secrets.compare_digest(match.group(1), api_key):
        message = WRONG_KEY_MESSAGE.format(masked=_mask(match.group(1)))
        return error_body(message, "invalid_request_error", None, "invalid_api_key")
    return None


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


def request_problem(body: Any) -> ErrorBody | None:
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
