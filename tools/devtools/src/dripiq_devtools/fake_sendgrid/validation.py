"""Mail Send request validation: every problem the real v3 /mail/send would refuse a body for,
from SendGrid's published schema and from the rules it documents that the schema cannot say."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from dripiq_devtools.fake_sendgrid.errors import (
    CATEGORY_NOT_ASCII,
    CONTENT_ORDER,
    CONTENT_REQUIRED,
    CONTENT_TYPE_REPEATED,
    CONTENT_TYPE_REQUIRED,
    CONTENT_VALUE_REQUIRED,
    CUSTOM_ARGS_NOT_STRINGS,
    CUSTOM_ARGS_TOO_LARGE,
    DOCUMENTED_SCHEMA_MESSAGES,
    DUPLICATE_ADDRESS,
    FROM_REQUIRED,
    HEADER_RESERVED,
    HEADER_VALUES_NOT_STRINGS,
    INVALID_ADDRESS,
    PERSONALIZATIONS_REQUIRED,
    REPLY_TO_EXCLUSIVE,
    SCHEMA_KEYWORD_MESSAGES,
    SEND_AT_TOO_FAR,
    SUBJECT_REQUIRED,
    TO_REQUIRED,
    TOO_MANY_RECIPIENTS,
    ApiError,
    api_error,
)
from dripiq_devtools.sendgrid_schema import SchemaViolation, is_known_erratum, mail_send_schema_violations

MAX_RECIPIENTS = 1000
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_SEND_AT_LEAD_SECONDS = 72 * 60 * 60
# Headers SendGrid sets itself; a request may not set them, in any letter case.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[^@\s<>(),;:\"\[\]\\]+@{_LABEL}(?:\.{_LABEL})+")
RECIPIENT_KINDS = ("to", "cc", "bcc")


def is_valid_email(value: Any) -> bool:
    """SendGrid rejects anything that is not a plain `local@domain.tld` address."""
    return isinstance(value, str) and len(value) <= 320 and _EMAIL.fullmatch(value) is not None


def _has_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def validate_mail(payload: Any, *, now: float) -> list[ApiError]:
    """Every problem SendGrid would report for this Mail Send body, all at once as it does.

    `now` (Unix seconds) bounds send_at. The checks of what every send needs come first in
    SendGrid's own words; the spec's schema adds what they miss, then SendGrid's other rules.
    """
    if not isinstance(payload, dict):
        return [api_error("Bad Request", None)]
    essentials = _essential_errors(payload)
    reported = {error["field"] for error in essentials}
    from_schema = [error for error in _schema_errors(payload) if error["field"] not in reported]
    return [*essentials, *from_schema, *_documented_rule_errors(payload, now)]


def _essential_errors(payload: dict[str, Any]) -> list[ApiError]:
    """Recipients, sender, reply-to address, subject and content: what every send needs."""
    return [
        *_personalizations_errors(payload.get("personalizations")),
        *_from_errors(payload.get("from")),
        *_reply_to_errors(payload),
        *_subject_errors(payload),
        *_content_errors(payload),
    ]


def _personalizations_errors(personalizations: Any) -> list[ApiError]:
    if not isinstance(personalizations, list) or not personalizations:
        return [api_error(PERSONALIZATIONS_REQUIRED, "personalizations")]
    errors: list[ApiError] = []
    for index, personalization in enumerate(personalizations):
        errors.extend(_personalization_errors(personalization, index))
    return errors


def _personalization_errors(personalization: Any, index: int) -> list[ApiError]:
    prefix = f"personalizations.{index}"
    if not isinstance(personalization, dict):
        return [api_error(TO_REQUIRED, f"{prefix}.to")]
    errors: list[ApiError] = []
    to = personalization.get("to")
    if not isinstance(to, list) or not to:
        errors.append(api_error(TO_REQUIRED, f"{prefix}.to"))
    for kind in RECIPIENT_KINDS:
        value = None if kind == "to" and not isinstance(to, list) else personalization.get(kind)
        errors.extend(_address_list_errors(value, f"{prefix}.{kind}"))
    if not errors:
        errors.extend(_duplicate_recipient_errors(personalization, index))
    return errors


def _address_list_errors(addresses: Any, field: str) -> list[ApiError]:
    if addresses is None:
        return []
    if not isinstance(addresses, list):
        return [api_error(f"The {field} field must be an array of email objects.", field)]
    errors: list[ApiError] = []
    for index, address in enumerate(addresses):
        errors.extend(_address_errors(address, f"{field}.{index}"))
    return errors


def _address_errors(address: Any, field: str) -> list[ApiError]:
    email = address.get("email") if isinstance(address, dict) else None
    return [] if is_valid_email(email) else [api_error(INVALID_ADDRESS, f"{field}.email")]


def _duplicate_recipient_errors(personalization: dict[str, Any], index: int) -> list[ApiError]:
    """SendGrid refuses a personalization that names the same address twice across to/cc/bcc."""
    seen: set[str] = set()
    for kind in RECIPIENT_KINDS:
        for address in personalization.get(kind) or []:
            email = address["email"].lower()
            if email in seen:
                message = DUPLICATE_ADDRESS.format(email=email, index=index, kind=kind)
                return [api_error(message, f"personalizations.{index}.{kind}")]
            seen.add(email)
    return []


def _from_errors(sender: Any) -> list[ApiError]:
    if not isinstance(sender, dict) or not _has_text(sender.get("email")):
        return [api_error(FROM_REQUIRED, "from.email")]
    return _address_errors(sender, "from")


def _reply_to_errors(payload: dict[str, Any]) -> list[ApiError]:
    errors: list[ApiError] = []
    if payload.get("reply_to") is not None:
        errors.extend(_address_errors(payload["reply_to"], "reply_to"))
    errors.extend(_address_list_errors(payload.get("reply_to_list"), "reply_to_list"))
    return errors


def _subject_errors(payload: dict[str, Any]) -> list[ApiError]:
    if _has_text(payload.get("subject")) or _has_text(payload.get("template_id")):
        return []
    personalizations = payload.get("personalizations")
    if (
        isinstance(personalizations, list)
        and personalizations
        and all(isinstance(p, dict) and _has_text(p.get("subject")) for p in personalizations)
    ):
        return []
    return [api_error(SUBJECT_REQUIRED, "subject")]


def _content_errors(payload: dict[str, Any]) -> list[ApiError]:
    if _has_text(payload.get("template_id")):
        return []
    content = payload.get("content")
    if not isinstance(content, list) or not content:
        return [api_error(CONTENT_REQUIRED, "content")]
    errors: list[ApiError] = []
    for index, block in enumerate(content):
        block = block if isinstance(block, dict) else {}
        if not _has_text(block.get("type")):
            errors.append(api_error(CONTENT_TYPE_REQUIRED, f"content.{index}.type"))
        if not _has_text(block.get("value")):
            errors.append(api_error(CONTENT_VALUE_REQUIRED, f"content.{index}.value"))
    return errors


def _schema_errors(payload: dict[str, Any]) -> list[ApiError]:
    """The spec's structural checks, at SendGrid's field paths, without the spec's erratum."""
    return [_schema_error(v) for v in mail_send_schema_violations(payload) if not is_known_erratum(v)]


def _schema_error(violation: SchemaViolation) -> ApiError:
    field = ".".join(str(part) for part in violation.path)
    pattern = ".".join("*" if isinstance(part, int) else part for part in violation.path)
    template = DOCUMENTED_SCHEMA_MESSAGES.get((pattern, violation.keyword)) or SCHEMA_KEYWORD_MESSAGES.get(
        violation.keyword
    )
    message = template.format_map(_message_values(violation)) if template else violation.message
    return api_error(message, field or None)


def _message_values(violation: SchemaViolation) -> dict[str, Any]:
    value = violation.value
    return {
        "limit": violation.limit,
        "given": _json_type(value),
        "property": violation.path[-1] if violation.path else "",
        "count": len(value) if isinstance(value, list) else 0,
        "value": value,
        "duplicate": _first_repeated(value),
    }


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array"}.get(type(value), "object")


def _first_repeated(value: Any) -> Any:
    if not isinstance(value, list):
        return None
    seen: set[str] = set()
    for item in value:
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return item
        seen.add(key)
    return None


def _documented_rule_errors(payload: dict[str, Any], now: float) -> list[ApiError]:
    """What SendGrid documents and enforces that its published schema does not say."""
    return [
        *_recipient_count_errors(payload),
        *_custom_args_errors(payload),
        *_custom_args_size_errors(payload),
        *_category_errors(payload.get("categories")),
        *_reply_to_exclusive_errors(payload),
        *_content_order_errors(payload.get("content")),
        *_headers_errors(payload),
        *_send_at_errors(payload, now),
    ]


def _personalizations(payload: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each personalization that is an object, with its index (the others are reported already)."""
    personalizations = payload.get("personalizations")
    if isinstance(personalizations, list):
        for index, personalization in enumerate(personalizations):
            if isinstance(personalization, dict):
                yield index, personalization


def _each_level(payload: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """`key` at the top level and in each personalization, with the field that names it."""
    return [(key, payload.get(key))] + [
        (f"personalizations.{index}.{key}", personalization.get(key))
        for index, personalization in _personalizations(payload)
    ]


def _recipient_count_errors(payload: dict[str, Any]) -> list[ApiError]:
    count = sum(
        len(addresses)
        for _, personalization in _personalizations(payload)
        for addresses in (personalization.get(kind) for kind in RECIPIENT_KINDS)
        if isinstance(addresses, list)
    )
    return [api_error(TOO_MANY_RECIPIENTS, "personalizations")] if count > MAX_RECIPIENTS else []


def _custom_args_errors(payload: dict[str, Any]) -> list[ApiError]:
    """Custom args are objects of strings. The spec types the top level as a string (its
    erratum, skipped with the schema's errors), so the real API's object check is here."""
    top_level = payload.get("custom_args")
    errors: list[ApiError] = []
    if top_level is not None and not isinstance(top_level, dict):
        message = SCHEMA_KEYWORD_MESSAGES["type"].format(limit="object", given=_json_type(top_level))
        errors.append(api_error(message, "custom_args"))
    for field, custom_args in _each_level(payload, "custom_args"):
        if isinstance(custom_args, dict) and not all(isinstance(v, str) for v in custom_args.values()):
            errors.append(api_error(CUSTOM_ARGS_NOT_STRINGS, field))
    return errors


def _custom_args_size_errors(payload: dict[str, Any]) -> list[ApiError]:
    """Each personalization's custom args merged over the top-level ones: 10,000 bytes at most."""
    top_level = _object_or_empty(payload.get("custom_args"))
    fields: list[str] = []
    for index, personalization in _personalizations(payload):
        own = _object_or_empty(personalization.get("custom_args"))
        if _json_bytes({**top_level, **own}) > MAX_CUSTOM_ARGS_BYTES:
            # Too large on its own, the top level is to blame once, not once per personalization.
            field = f"personalizations.{index}.custom_args" if own else "custom_args"
            if field not in fields:
                fields.append(field)
    return [api_error(CUSTOM_ARGS_TOO_LARGE, field) for field in fields]


def _object_or_empty(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _category_errors(categories: Any) -> list[ApiError]:
    """The schema bounds count, length and repeats; SendGrid also wants categories in ASCII."""
    if isinstance(categories, list) and any(isinstance(c, str) and not c.isascii() for c in categories):
        return [api_error(CATEGORY_NOT_ASCII, "categories")]
    return []


def _reply_to_exclusive_errors(payload: dict[str, Any]) -> list[ApiError]:
    if payload.get("reply_to") is not None and payload.get("reply_to_list") is not None:
        return [api_error(REPLY_TO_EXCLUSIVE, "reply_to_list")]
    return []


def _content_order_errors(content: Any) -> list[ApiError]:
    """text/plain first, then text/html, then the rest; and no type twice."""
    if not isinstance(content, list):
        return []
    types = [block["type"].lower() if _has_text(block.get("type")) else None for block in _objects(content)]
    errors: list[ApiError] = []
    leading = [kind for kind in ("text/plain", "text/html") if kind in types]
    if types[: len(leading)] != leading:
        errors.append(api_error(CONTENT_ORDER, "content"))
    repeated = _first_repeated([kind for kind in types if kind is not None])
    if repeated is not None:
        errors.append(api_error(CONTENT_TYPE_REPEATED.format(type=repeated), "content"))
    return errors


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    return [item if isinstance(item, dict) else {} for item in items]


def _headers_errors(payload: dict[str, Any]) -> list[ApiError]:
    errors: list[ApiError] = []
    for field, headers in _each_level(payload, "headers"):
        if not isinstance(headers, dict):
            continue
        if any(name.lower() in RESERVED_HEADERS for name in headers):
            errors.append(api_error(HEADER_RESERVED, field))
        if not all(isinstance(value, str) for value in headers.values()):
            errors.append(api_error(HEADER_VALUES_NOT_STRINGS, field))
    return errors


def _send_at_errors(payload: dict[str, Any], now: float) -> list[ApiError]:
    return [
        api_error(SEND_AT_TOO_FAR, field)
        for field, send_at in _each_level(payload, "send_at")
        if isinstance(send_at, int) and not isinstance(send_at, bool) and send_at > now + MAX_SEND_AT_LEAD_SECONDS
    ]
