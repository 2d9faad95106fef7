"""A local stand-in for the SendGrid v3 Mail Send API and its Signed Event Webhook.

Development (`make run`) and the tests point the real `sendgrid` client at it with
`SendGridAPIClient(key, host=fake.url)`. It answers with SendGrid's status codes, headers and
error bodies, records every accepted message, and posts events back signed exactly as SendGrid
signs them, so the dispatcher and the events service run the same code paths as in production.
It is never more generous than the real SendGrid:

- A send is held to SendGrid's published schema (`specs/`, through `sendgrid_schema`) with its
  one known erratum corrected, and to the rules SendGrid documents that the schema cannot say
  (custom_args size, content order, reserved headers, send_at window, recipient count, ...).
  Every problem is reported at once, in SendGrid's `{"errors": [...]}` shape.
- An open is reported only for a message with a text/html part and open tracking on; a click
  only on a link SendGrid rewrote (see `AcceptedMessage.tracked_links`). The request's
  tracking_settings decide; where it is silent, the account's setting does (off by default).
- With a webhook URL and a delay, `processed` then `delivered` arrive by themselves for every
  recipient, in signed batches of at most 1,000, retried until the receiver takes them.

    python -m dripiq_devtools.fake_sendgrid --port 8025 --private-key-file .run/sendgrid.pem \
        --webhook-url http://127.0.0.1:8080/webhooks/sendgrid/events --auto-events-delay 1

Endpoints:
    POST   /v3/mail/send      SendGrid's Mail Send (202 + X-Message-Id, 400, 401, 429, 5xx)
    GET    /_fake/messages    {"messages": [...], "requests_received"} every accepted message
    DELETE /_fake/messages    forget them
    GET    /_fake/stats       {"requests_received", "accepted", "distinct_message_ids",
                              "events_posted", "events_pending"}
    POST   /_fake/events      {"webhook_url", "x_message_id", "event", "extra"}
                              -> {"status": <webhook's HTTP status>, "event": {...}}; 409 for an
                              open or click SendGrid could not have tracked (a click takes
                              extra.url, one of the message's tracked links; default: the first)
    POST   /_fake/failures    {"status", "count"}: the next sends answer with that status
    POST   /_fake/latency     {"seconds"}: slow every answer from now on
    GET    /_fake/public-key  {"public_key": <base64 DER SubjectPublicKeyInfo>}

Options (`FakeSendGrid(...)` / command line):
    private_key_pem / --private-key-file   the Event Webhook signing key (ECDSA P-256)
    latency_seconds / --latency            seconds before each answer
    rate_limit_per_second / --rate-limit   sends per second before answering 429
    api_key / --api-key                    accept only this key (default: any bearer token)
    webhook_url / --webhook-url            where processed and delivered events go by themselves
    auto_events_delay_seconds / --auto-events-delay
                                           how often they are flushed (0, the default: never)
    account_open_tracking, account_click_tracking
                                           the account's tracking, for requests that say nothing
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import secrets
import string
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from html.parser import HTMLParser
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dripiq_common.service import run_process
from dripiq_devtools.local_server import LocalHttpServer
from dripiq_devtools.sendgrid_schema import SchemaViolation, is_known_erratum, mail_send_schema_violations

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MESSAGE_ID_HEADER = "X-Message-Id"
MAIL_SEND_PATH = "/v3/mail/send"
MAX_REQUEST_BYTES = 30 * 1024 * 1024
DEFAULT_PORT = 8025

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
MAX_EVENTS_PER_POST = 1000
# SendGrid retries a refused batch for up to 24 hours; the fake retries as long as it runs,
# waiting twice as long after each refusal up to this.
MAX_RETRY_WAIT_SECONDS = 60.0

HELP_URL = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
UNAUTHORIZED_MESSAGE = "The provided authorization grant is invalid, expired, or revoked"
PERSONALIZATIONS_REQUIRED = "The personalizations field is required and must have at least one personalization."
TO_REQUIRED = (
    "The to array is required for all personalization objects, "
    "and must have at least one email object with a valid email address."
)
FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires "
    "the email parameter, but may also contain a name parameter.  "
    'e.g. {"email" : "example@example.com"}  or '
    '{"email" : "example@example.com", "name" : "Example Recipient"}.'
)
INVALID_ADDRESS = "Does not contain a valid address."
DUPLICATE_ADDRESS = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. "
    "We found the first duplicate instance of [{email}] "
    "in the personalizations.{index}.{kind} field."
)
SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template "
    "with a subject defined or if every personalization has a subject defined."
)
CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block. We typically suggest both text/plain and text/html "
    "blocks are included, but only one block is required."
)
CONTENT_TYPE_REQUIRED = "The content type must be a string at least one character in length."
CONTENT_VALUE_REQUIRED = "The content value must be a string at least one character in length."
# The messages below are SendGrid's documented ones (its Mail Send errors reference), except
# CONTENT_TYPE_REPEATED and REPLY_TO_EXCLUSIVE, which it documents only as rules.
TOO_MANY_PERSONALIZATIONS = (
    "The personalization block is limited to 1000 personalizations per API request. You have "
    "provided {count} personalizations. Please consider splitting this into multiple requests "
    "and resending your request."
)
TOO_MANY_RECIPIENTS = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
CUSTOM_ARGS_NOT_STRINGS = "All values of custom arguments object must be strings"
CUSTOM_ARGS_TOO_LARGE = (
    "The combined size of both global and personalization custom arguments may not exceed "
    "10,000 bytes per personalization."
)
CATEGORIES_NOT_STRINGS = "Categories must be an array of strings."
TOO_MANY_CATEGORIES = "There is a limit of 10 categories for each email that is sent. You provided {count} categories."
CATEGORY_TOO_LONG = "Each category must not be longer than 255 characters. {value} exceeds this limit"
CATEGORY_REPEATED = "The categories must be a unique list, and you have included {duplicate} more than once."
CATEGORY_NOT_ASCII = "Categories can not contain non-ASCII characters."
REPLY_TO_EXCLUSIVE = "The reply_to and reply_to_list fields are mutually exclusive: use one of them, not both."
CONTENT_ORDER = (
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your "
    "email: text/plain needs to be first, followed by text/html, followed by any other content."
)
CONTENT_TYPE_REPEATED = "Each content type may be included only once, and you have included {type} more than once."
HEADER_RESERVED = "Header can not be one of the reserved keys."
HEADER_VALUES_NOT_STRINGS = "The header values must be strings."
SUBJECT_EMPTY = "The subject of your email must be a string at least one character in length."
SEND_AT_NOT_INTEGER = (
    "The send_at parameter is expecting a Unix timestamp as an integer. We will send "
    "immediately if you include a send_at timestamp that is in the past."
)
SEND_AT_TOO_FAR = "Scheduling more than 72 hours in advance is forbidden."
ASM_GROUP_NOT_INTEGER = "The ASM group ID must be an integer."

# What SendGrid says where the spec's schema fails, keyed by (field with indexes as *, keyword).
_DOCUMENTED_SCHEMA_MESSAGES: dict[tuple[str, str], str] = {
    ("personalizations", "maxItems"): TOO_MANY_PERSONALIZATIONS,
    ("personalizations.*.subject", "type"): SUBJECT_EMPTY,
    ("personalizations.*.subject", "minLength"): SUBJECT_EMPTY,
    ("personalizations.*.send_at", "type"): SEND_AT_NOT_INTEGER,
    ("subject", "type"): SUBJECT_EMPTY,
    ("subject", "minLength"): SUBJECT_EMPTY,
    ("send_at", "type"): SEND_AT_NOT_INTEGER,
    ("categories", "type"): CATEGORIES_NOT_STRINGS,
    ("categories", "maxItems"): TOO_MANY_CATEGORIES,
    ("categories", "uniqueItems"): CATEGORY_REPEATED,
    ("categories.*", "type"): CATEGORIES_NOT_STRINGS,
    ("categories.*", "maxLength"): CATEGORY_TOO_LONG,
    ("asm.group_id", "type"): ASM_GROUP_NOT_INTEGER,
    ("asm.group_id", "required"): ASM_GROUP_NOT_INTEGER,
    ("tracking_settings.click_tracking.enable", "type"): "The click tracking enable param should be a boolean value.",
    ("tracking_settings.click_tracking.enable_text", "type"): "The click tracking enable text must be a boolean value.",
    ("tracking_settings.open_tracking.enable", "type"): "The open tracking enable param should be a boolean value.",
    ("tracking_settings.subscription_tracking.enable", "type"): (
        "The subscription tracking enable param should be a boolean value."
    ),
    ("tracking_settings.ganalytics.enable", "type"): "The Google Analytics enable param must be a boolean value.",
}
# Elsewhere, the wording of the JSON Schema library SendGrid's validator answers with (its
# custom_args answer is "Invalid type. Expected: object, given: string.").
_SCHEMA_KEYWORD_MESSAGES: dict[str, str] = {
    "type": "Invalid type. Expected: {limit}, given: {given}.",
    "required": "{property} is required.",
    "minItems": "Array must have at least {limit} items.",
    "maxItems": "Array must have at most {limit} items.",
    "uniqueItems": "Array items must be unique; {duplicate} is repeated.",
    "minLength": "String length must be greater than or equal to {limit}.",
    "maxLength": "String length must be less than or equal to {limit}.",
    "maxProperties": "Must have at most {limit} properties.",
    "format": "Does not match format '{limit}'.",
    "enum": "Must be one of the following: {limit}.",
}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s<>(),;:\"\[\]\\]+@{_LABEL}(?:\.{_LABEL})+$")
_BEARER = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)
_RECIPIENT_KINDS = ("to", "cc", "bcc")
_TRIGGER_FIELDS = ("webhook_url", "x_message_id", "event")

ApiError = dict[str, str | None]
Clock = Callable[[], float]


def api_error(message: str, field: str | None = None) -> ApiError:
    """One entry of SendGrid's `errors` array; clients key their handling on `field`."""
    help_url = f"{HELP_URL}#message.{_help_anchor(field)}" if field else None
    return {"message": message, "field": field, "help": help_url}


def _help_anchor(field: str) -> str:
    return ".".join(part for part in field.split(".") if not part.isdigit())


def is_valid_email(value: Any) -> bool:
    """SendGrid rejects anything that is not a plain `local@domain.tld` address."""
    return isinstance(value, str) and len(value) <= 320 and _EMAIL.match(value) is not None


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
    for kind in _RECIPIENT_KINDS:
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
    for kind in _RECIPIENT_KINDS:
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
    template = _DOCUMENTED_SCHEMA_MESSAGES.get((pattern, violation.keyword)) or _SCHEMA_KEYWORD_MESSAGES.get(
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
        for addresses in (personalization.get(kind) for kind in _RECIPIENT_KINDS)
        if isinstance(addresses, list)
    )
    return [api_error(TOO_MANY_RECIPIENTS, "personalizations")] if count > MAX_RECIPIENTS else []


def _custom_args_errors(payload: dict[str, Any]) -> list[ApiError]:
    """Custom args are objects of strings. The spec types the top level as a string (its
    erratum, skipped with the schema's errors), so the real API's object check is here."""
    top_level = payload.get("custom_args")
    errors: list[ApiError] = []
    if top_level is not None and not isinstance(top_level, dict):
        message = _SCHEMA_KEYWORD_MESSAGES["type"].format(limit="object", given=_json_type(top_level))
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


def new_message_id() -> str:
    """SendGrid's X-Message-Id: 22 characters of base64url (16 random bytes, unpadded)."""
    return secrets.token_urlsafe(16)[:22]


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """A link SendGrid rewrote for click tracking; a click on it reports where it sits."""

    url: str
    part: Literal["html", "text"]
    # Its position among the tracked links of its part, as the event's url_offset.index.
    index: int

    @property
    def url_offset(self) -> dict[str, Any]:
        return {"index": self.index, "type": self.part}

    def to_json(self) -> dict[str, Any]:
        return {"url": self.url, "url_offset": self.url_offset}


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """One Mail Send request the fake answered 202 to, as the sender would want to assert on it.

    The account's tracking settings are those in force when it was sent: they apply wherever
    the request's tracking_settings say nothing.
    """

    x_message_id: str
    payload: dict[str, Any]
    received_at: datetime
    account_open_tracking: bool = False
    account_click_tracking: bool = False

    @property
    def personalizations(self) -> list[dict[str, Any]]:
        return list(self.payload.get("personalizations") or [])

    @property
    def to_emails(self) -> list[str]:
        return [a["email"] for p in self.personalizations for a in p.get("to") or []]

    @property
    def recipient_emails(self) -> list[str]:
        """Everyone SendGrid delivers a copy to: to, cc and bcc of every personalization."""
        return [a["email"] for p in self.personalizations for kind in _RECIPIENT_KINDS for a in p.get(kind) or []]

    @property
    def from_email(self) -> str:
        return str(self.payload["from"]["email"])

    @property
    def subject(self) -> str | None:
        """The first personalization's subject, which overrides the top-level one as in SendGrid."""
        first = self.personalizations[0] if self.personalizations else {}
        return first.get("subject") or self.payload.get("subject")

    @property
    def custom_args(self) -> dict[str, str]:
        """Top-level custom_args overlaid with the first personalization's, as SendGrid merges."""
        return self._merged("custom_args", self._personalization_for(None))

    @property
    def headers(self) -> dict[str, str]:
        return self._merged("headers", self._personalization_for(None))

    @property
    def reply_to(self) -> str | None:
        reply_to = self.payload.get("reply_to")
        if isinstance(reply_to, dict):
            return reply_to.get("email")
        reply_to_list = self.payload.get("reply_to_list") or []
        return reply_to_list[0].get("email") if reply_to_list else None

    @property
    def categories(self) -> list[str]:
        return list(self.payload.get("categories") or [])

    def custom_args_for(self, email: str | None) -> dict[str, str]:
        """Custom args as SendGrid attaches them to the events of one recipient."""
        return self._merged("custom_args", self._personalization_for(email))

    def open_untracked_reason(self) -> str | None:
        """Why SendGrid could not report an open of this message, or None when it could."""
        html = self._content("text/html")
        if html is None:
            return "it has no text/html part, which is where SendGrid puts its open-tracking pixel"
        if not self._tracking_on("open_tracking", self.account_open_tracking):
            return self._tracking_off_reason("open_tracking")
        tag = self._tracking_setting("open_tracking").get("substitution_tag")
        if tag and tag not in html:
            return f"its text/html part lacks the open_tracking substitution_tag {tag!r}, which the pixel replaces"
        return None

    def click_untracked_reason(self) -> str | None:
        """Why SendGrid could not report a click in this message, or None when it could."""
        if self.tracked_links():
            return None
        if not self._tracking_on("click_tracking", self.account_click_tracking):
            return self._tracking_off_reason("click_tracking")
        if self._text_clicks_tracked():
            return "it has no http(s) link SendGrid rewrites, in its text/html or its text/plain part"
        return (
            "it has no <a href> to an http(s) URL without clicktracking=off in a text/html part "
            "(URLs in the text/plain part count only with click_tracking.enable_text)"
        )

    def tracked_links(self) -> list[TrackedLink]:
        """The links SendGrid rewrites for click tracking, html part first, in document order.

        In the text/html part: every `<a href="http(s)://...">` except those marked
        `clicktracking=off`; in the text/plain part, only with click_tracking.enable_text: every
        http(s) URL.
        """
        if not self._tracking_on("click_tracking", self.account_click_tracking):
            return []
        html, text = self._content("text/html"), self._content("text/plain")
        links = [TrackedLink(url, "html", i) for i, url in enumerate(_html_tracked_urls(html or ""))]
        if self._text_clicks_tracked():
            links += [TrackedLink(url, "text", i) for i, url in enumerate(_text_urls(text or ""))]
        return links

    def _content(self, mime_type: str) -> str | None:
        for block in self.payload.get("content") or []:
            if str(block.get("type", "")).lower() == mime_type:
                return str(block.get("value", ""))
        return None

    def _tracking_setting(self, name: str) -> dict[str, Any]:
        return (self.payload.get("tracking_settings") or {}).get(name) or {}

    def _tracking_on(self, name: str, account_default: bool) -> bool:
        enable = self._tracking_setting(name).get("enable")
        return account_default if enable is None else enable is True

    def _text_clicks_tracked(self) -> bool:
        return self._tracking_setting("click_tracking").get("enable_text") is True

    def _tracking_off_reason(self, name: str) -> str:
        if self._tracking_setting(name).get("enable") is False:
            return f"the request turns it off (tracking_settings.{name}.enable is false)"
        return f"the request leaves {name} to the account, where it is off"

    def _personalization_for(self, email: str | None) -> dict[str, Any]:
        for personalization in self.personalizations:
            if email is not None and email.lower() in _recipients(personalization):
                return personalization
        return self.personalizations[0] if self.personalizations else {}

    def _merged(self, key: str, personalization: dict[str, Any]) -> dict[str, str]:
        return {**(self.payload.get(key) or {}), **(personalization.get(key) or {})}

    def to_json(self) -> dict[str, Any]:
        return {
            "x_message_id": self.x_message_id,
            "received_at": self.received_at.isoformat(),
            "to_emails": self.to_emails,
            "from_email": self.from_email,
            "subject": self.subject,
            "custom_args": self.custom_args,
            "headers": self.headers,
            "reply_to": self.reply_to,
            "categories": self.categories,
            "open_untracked_reason": self.open_untracked_reason(),
            "tracked_links": [link.to_json() for link in self.tracked_links()],
            "payload": self.payload,
        }


def _recipients(personalization: dict[str, Any]) -> set[str]:
    return {
        str(address.get("email", "")).lower()
        for kind in _RECIPIENT_KINDS
        for address in personalization.get(kind) or []
    }


_HTTP_URL = re.compile(r"^https?://\S", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# Punctuation that ends a sentence around a URL in plain text rather than belonging to it.
_TRAILING_PUNCTUATION = ".,;:!?)]}"


class _TrackedAnchors(HTMLParser):
    """Collects the href of each anchor SendGrid's click tracking rewrites, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        attributes = {name: (value or "") for name, value in attrs}
        href = attributes.get("href", "").strip()
        if _HTTP_URL.match(href) and attributes.get("clicktracking", "").lower() != "off":
            self.urls.append(href)


def _html_tracked_urls(html: str) -> list[str]:
    parser = _TrackedAnchors()
    parser.feed(html)
    parser.close()
    return parser.urls


def _text_urls(text: str) -> list[str]:
    return [match.group().rstrip(_TRAILING_PUNCTUATION) for match in _TEXT_URL.finditer(text)]


_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
_EVENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "processed": {},
    "deferred": {"response": "400 try again later", "attempt": "1"},
    "delivered": {"response": "250 OK", "tls": 1},
    "open": {"sg_machine_open": False, "useragent": _BROWSER, "ip": "203.0.113.7"},
    "click": {
        "url": "https://example.com/",
        "url_offset": {"index": 0, "type": "html"},
        "useragent": _BROWSER,
        "ip": "203.0.113.7",
    },
    "bounce": {
        "type": "bounce",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
        "bounce_classification": "Invalid Address",
    },
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "spamreport": {},
    "unsubscribe": {},
    "group_unsubscribe": {"useragent": _BROWSER, "ip": "203.0.113.7"},
    "group_resubscribe": {"useragent": _BROWSER, "ip": "203.0.113.7"},
}


def build_event(message: AcceptedMessage, event: str, **extra: Any) -> dict[str, Any]:
    """One Event Webhook entry for `message` shaped as SendGrid posts it; `extra` wins.

    Custom args sit at the top level of the event, beside SendGrid's own keys, which is where
    the receiving service must look for them. `email` in `extra` picks the recipient.
    """
    email = str(extra.get("email") or (message.to_emails or [""])[0])
    now = int(time.time())
    built: dict[str, Any] = {**message.custom_args_for(email)}
    built.update(
        email=email,
        timestamp=now,
        event=event,
        sg_event_id=_sg_event_id(event, message.x_message_id),
        sg_message_id=f"{message.x_message_id}.{_filter_suffix(now)}",
    )
    built["smtp-id"] = f"<{message.x_message_id}@ismtpd0001p1iad1.sendgrid.net>"
    if message.categories:
        built["category"] = message.categories
    asm = message.payload.get("asm")
    if isinstance(asm, dict) and "group_id" in asm:
        built["asm_group_id"] = asm["group_id"]
    built.update(_EVENT_DEFAULTS.get(event, {}))
    built.update(extra)
    return built


class UnreportableEvent(ValueError):
    """SendGrid could not have posted this event for this message."""


def build_reportable_event(message: AcceptedMessage, event: str, **extra: Any) -> dict[str, Any]:
    """`build_event`, but only for an open or click SendGrid could have tracked.

    A click is on `extra["url"]`, which must be one of `message.tracked_links()`, or on the
    first of them; its url_offset says where that link sits. Other events pass through.
    Raises UnreportableEvent saying why not.
    """
    if event == "open":
        reason = message.open_untracked_reason()
        if reason is not None:
            raise UnreportableEvent(f"SendGrid could not report an open for this message: {reason}")
    if event == "click":
        link = _clicked_link(message, extra.get("url"))
        extra = {**extra, "url": link.url, "url_offset": link.url_offset}
    return build_event(message, event, **extra)


def _clicked_link(message: AcceptedMessage, url: Any) -> TrackedLink:
    links = message.tracked_links()
    if not links:
        raise UnreportableEvent(
            f"SendGrid could not report a click for this message: {message.click_untracked_reason()}"
        )
    if url is None:
        return links[0]
    for link in links:
        if link.url == url:
            return link
    tracked = ", ".join(f"{link.url} ({link.part} #{link.index})" for link in links)
    raise UnreportableEvent(f"SendGrid could not report a click on {url} for this message: it rewrote only {tracked}")


def _sg_event_id(event: str, x_message_id: str) -> str:
    """Unique per event, base64url like SendGrid's (which encodes event, ids and a counter)."""
    raw = f"{event}-{secrets.randbelow(10**9)}-{x_message_id}-{secrets.randbelow(100)}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _filter_suffix(now: int) -> str:
    """The mail-filter part SendGrid appends to X-Message-Id to form sg_message_id."""
    pod = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
    return f"recvd-{secrets.token_hex(5)[:9]}-{pod}-1-{now:X}-{secrets.randbelow(256):X}.0"


def generate_private_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_or_create_private_key(path: Path) -> bytes:
    """Reuse the key across restarts so the public key configured in the events service holds."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = generate_private_key_pem()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return pem


def _load_private_key(pem: bytes | None) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem or generate_private_key_pem(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the Event Webhook key must be an ECDSA P-256 private key")
    return key


class _FixedWindowLimiter:
    """Counts requests per wall-clock second, and tells callers when the next second opens."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._window = 0
        self._used = 0

    def admit(self) -> bool:
        window = int(self._clock())
        if window != self._window:
            self._window, self._used = window, 0
        if self._used >= self.limit:
            return False
        self._used += 1
        return True

    @property
    def reset_at(self) -> int:
        return self._window + 1


def _errors_response(status: int, errors: list[ApiError], **headers: str) -> web.Response:
    return web.json_response({"errors": errors}, status=status, headers=headers or None)


def _server_error_body(status: int) -> list[ApiError]:
    """What SendGrid puts in a 5xx (or any injected) answer: only a lower-case reason phrase."""
    return [{"field": None, "message": HTTPStatus(status).phrase.lower(), "help": None}]


_EventPost = Callable[[list[dict[str, Any]]], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class _QueuedEvent:
    event: dict[str, Any]
    # Built and queued once `event` is posted, as SendGrid reports delivery after processing.
    then: Callable[[], dict[str, Any]] | None = None


class _WebhookOutbox:
    """Events on their way to the webhook, posted in order in batches by `flush`.

    A batch the receiver refuses (non-2xx) or cannot take (unreachable) stays at the head of
    the queue and is posted again in a later flush, after a wait that doubles with each refusal
    up to MAX_RETRY_WAIT_SECONDS; nothing queued is dropped while the fake runs.
    """

    def __init__(self, post: _EventPost, *, interval_seconds: float) -> None:
        self._post = post
        self._interval_seconds = interval_seconds
        self._queue: deque[_QueuedEvent] = deque()
        self._refusals = 0
        self._retry_at = 0.0

    @property
    def pending(self) -> int:
        """Events not yet taken by the receiver, counting those that follow a queued one."""
        return sum(1 if queued.then is None else 2 for queued in self._queue)

    def add(self, events: Iterable[_QueuedEvent]) -> None:
        self._queue.extend(events)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Post what is queued now, a batch at a time, stopping at the first refusal.

        Events queued during the flush (new sends, the follow-ups of posted events) wait for
        the next one, so a `delivered` never travels with, or before, its `processed`.
        """
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return
        due = len(self._queue)
        while due > 0:
            batch = list(itertools.islice(self._queue, min(due, MAX_EVENTS_PER_POST)))
            if not await self._taken([queued.event for queued in batch]):
                self._refusals += 1
                wait = self._interval_seconds * 2 ** min(self._refusals - 1, 16)
                self._retry_at = loop.time() + min(wait, MAX_RETRY_WAIT_SECONDS)
                return
            self._refusals = 0
            for _ in batch:
                self._queue.popleft()
            due -= len(batch)
            self._queue.extend(_QueuedEvent(queued.then()) for queued in batch if queued.then is not None)

    async def _taken(self, events: list[dict[str, Any]]) -> bool:
        try:
            status = await self._post(events)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
        return _is_2xx(status)


def _is_2xx(status: int) -> bool:
    return HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES


def _processed_then_delivered(message: AcceptedMessage) -> list[_QueuedEvent]:
    return [
        _QueuedEvent(
            build_event(message, "processed", email=email),
            then=partial(build_event, message, "delivered", email=email),
        )
        for email in message.recipient_emails
    ]


class FakeSendGrid(LocalHttpServer):
    """The fake server: Mail Send, recorded messages, and signed Event Webhook posts.

    Use `async with FakeSendGrid() as fake:` or `await fake.start()` / `await fake.stop()`.
    `api_key` set means only that key is accepted; otherwise any bearer token is.
    With `webhook_url` and `auto_events_delay_seconds` > 0, every accepted message's recipients
    get `processed` and then `delivered` posted to that URL, flushed at that interval.
    `account_open_tracking` / `account_click_tracking` are the account's tracking settings, which
    apply where a request says nothing; off, as a fresh account could have them.
    """

    def __init__(
        self,
        *,
        private_key_pem: bytes | None = None,
        latency_seconds: float = 0.0,
        rate_limit_per_second: int | None = None,
        api_key: str | None = None,
        clock: Clock = time.time,
        webhook_url: str | None = None,
        auto_events_delay_seconds: float = 0,
        account_open_tracking: bool = False,
        account_click_tracking: bool = False,
    ) -> None:
        self.messages: list[AcceptedMessage] = []
        self.latency_seconds = latency_seconds
        # Every mail-send request that arrived, answered yet or not.
        self.requests_received = 0
        # Events in batches a webhook answered 2xx to, whether posted by hand or by themselves.
        self.events_posted = 0
        self.api_key = api_key
        self.account_open_tracking = account_open_tracking
        self.account_click_tracking = account_click_tracking
        self._clock = clock
        self._private_key = _load_private_key(private_key_pem)
        self._limiter = _FixedWindowLimiter(rate_limit_per_second, clock) if rate_limit_per_second else None
        self._failures: deque[int] = deque()
        self._outbox = (
            _WebhookOutbox(partial(self.post_events, webhook_url), interval_seconds=auto_events_delay_seconds)
            if webhook_url and auto_events_delay_seconds > 0
            else None
        )
        super().__init__()

    @property
    def public_key_base64(self) -> str:
        """Base64 DER SubjectPublicKeyInfo: the 'verification key' SendGrid shows in its UI."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    @property
    def private_key_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def url(self) -> str:
        """The `host` to give SendGridAPIClient (it appends /v3/...)."""
        return self.base_url

    def fail_next(self, status: int, count: int = 1) -> None:
        """Make the next `count` authorized sends answer `status` instead of being processed."""
        self._failures.extend([HTTPStatus(status)] * count)

    def clear_failures(self) -> None:
        """Forget the failures `fail_next` queued and not yet answered."""
        self._failures.clear()

    def clear(self) -> None:
        self.messages.clear()

    def find(self, x_message_id: str) -> AcceptedMessage | None:
        return next((m for m in self.messages if m.x_message_id == x_message_id), None)

    def sign(self, body: bytes, timestamp: str) -> str:
        """SendGrid's Event Webhook signature: base64 DER ECDSA-SHA256 over timestamp + body."""
        signature = self._private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")

    def signed_request(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """The exact bytes and headers SendGrid would post, including its trailing CRLF."""
        body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: self.sign(body, timestamp),
            TIMESTAMP_HEADER: timestamp,
        }
        return body, headers

    async def post_events(
        self, webhook_url: str, events: list[dict[str, Any]], *, timeout_seconds: float = 10.0
    ) -> int:
        """Deliver `events` as one signed batch; returns the receiver's HTTP status."""
        body, headers = self.signed_request(events)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(webhook_url, data=body, headers=headers) as response:
                await response.read()
        if _is_2xx(response.status):
            self.events_posted += len(events)
        return response.status

    @property
    def events_pending(self) -> int:
        """Automatic events not yet taken by the webhook."""
        return self._outbox.pending if self._outbox else 0

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(MAIL_SEND_PATH, self._handle_mail_send)
        app.router.add_get("/_fake/messages", self._handle_list_messages)
        app.router.add_get("/_fake/stats", self._handle_stats)
        app.router.add_delete("/_fake/messages", self._handle_clear_messages)
        app.router.add_post("/_fake/events", self._handle_trigger_event)
        app.router.add_post("/_fake/failures", self._handle_inject_failures)
        app.router.add_post("/_fake/latency", self._handle_set_latency)
        app.router.add_get("/_fake/public-key", self._handle_public_key)
        app.router.add_route("*", "/v3/{tail:.*}", self._handle_unknown_api)
        app.cleanup_ctx.append(self._posting_events_automatically)
        return app

    async def _posting_events_automatically(self, _app: web.Application) -> AsyncIterator[None]:
        """While the app runs (aiohttp's background-task idiom), flush the outbox on its timer."""
        task = asyncio.create_task(self._outbox.run()) if self._outbox else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _authorized(self, request: web.Request) -> bool:
        match = _BEARER.match(request.headers.get("Authorization", ""))
        if match is None:
            return False
        return self.api_key is None or secrets.compare_digest(match.group(1), self.api_key)

    def _too_many_requests(self) -> web.Response:
        limit = self._limiter.limit if self._limiter else 1
        reset_at = self._limiter.reset_at if self._limiter else int(self._clock()) + 1
        return _errors_response(
            HTTPStatus.TOO_MANY_REQUESTS,
            [{"field": None, "message": "too many requests"}],
            **{
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset_at),
            },
        )

    def _injected_failure(self, status: int) -> web.Response:
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            return self._too_many_requests()
        if status == HTTPStatus.UNAUTHORIZED:
            return _errors_response(status, [api_error(UNAUTHORIZED_MESSAGE, None)])
        return _errors_response(status, _server_error_body(status))

    async def _handle_mail_send(self, request: web.Request) -> web.Response:
        # Like the real API, a request that arrived whole is processed even if its sender
        # hangs up (or dies) before the answer: the send happened, the answer was lost.
        raw = await request.read()
        self.requests_received += 1
        return await asyncio.shield(self._answer_mail_send(request, raw))

    async def _answer_mail_send(self, request: web.Request, raw: bytes) -> web.Response:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        if not self._authorized(request):
            return _errors_response(HTTPStatus.UNAUTHORIZED, [api_error(UNAUTHORIZED_MESSAGE)])
        if self._limiter is not None and not self._limiter.admit():
            return self._too_many_requests()
        if self._failures:
            return self._injected_failure(self._failures.popleft())
        return self._accept(raw)

    def _accept(self, raw: bytes) -> web.Response:
        try:
            payload = json.loads(raw)
        except ValueError:
            return _errors_response(HTTPStatus.BAD_REQUEST, [api_error("Bad Request")])
        errors = validate_mail(payload, now=self._clock())
        if errors:
            return _errors_response(HTTPStatus.BAD_REQUEST, errors)
        message = AcceptedMessage(
            new_message_id(),
            payload,
            datetime.now(UTC),
            account_open_tracking=self.account_open_tracking,
            account_click_tracking=self.account_click_tracking,
        )
        self.messages.append(message)
        if self._outbox is not None:
            self._outbox.add(_processed_then_delivered(message))
        headers = {MESSAGE_ID_HEADER: message.x_message_id}
        return web.Response(status=HTTPStatus.ACCEPTED, headers=headers)

    async def _handle_list_messages(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"messages": [m.to_json() for m in self.messages], "requests_received": self.requests_received}
        )

    async def _handle_stats(self, _request: web.Request) -> web.Response:
        """Counts without the messages, for runs too large to list."""
        distinct = {m.custom_args.get("message_id") for m in self.messages}
        return web.json_response(
            {
                "requests_received": self.requests_received,
                "accepted": len(self.messages),
                "distinct_message_ids": len(distinct - {None}),
                "events_posted": self.events_posted,
                "events_pending": self.events_pending,
            }
        )

    async def _handle_clear_messages(self, _request: web.Request) -> web.Response:
        cleared = len(self.messages)
        self.clear()
        return web.json_response({"cleared": cleared})

    async def _handle_public_key(self, _request: web.Request) -> web.Response:
        return web.json_response({"public_key": self.public_key_base64})

    async def _handle_unknown_api(self, _request: web.Request) -> web.Response:
        errors: list[ApiError] = [{"field": None, "message": "resource not found"}]
        return _errors_response(HTTPStatus.NOT_FOUND, errors)

    async def _handle_inject_failures(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        status, count = spec.get("status"), spec.get("count", 1)
        if not isinstance(status, int) or not isinstance(count, int) or count < 1:
            return _control_error(HTTPStatus.BAD_REQUEST, "expected status and count >= 1")
        try:
            self.fail_next(status, count)
        except ValueError:
            return _control_error(HTTPStatus.BAD_REQUEST, f"unknown HTTP status {status}")
        return web.json_response({"pending": len(self._failures)})

    async def _handle_set_latency(self, request: web.Request) -> web.Response:
        """Slow every answer from now on, e.g. to catch a sender in the middle of a call."""
        seconds = (await _json_object(request)).get("seconds")
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 60:
            return _control_error(HTTPStatus.BAD_REQUEST, "expected seconds between 0 and 60")
        self.latency_seconds = float(seconds)
        return web.json_response({"latency_seconds": self.latency_seconds})

    async def _handle_trigger_event(self, request: web.Request) -> web.Response:
        spec = await _json_object(request)
        webhook_url, x_message_id, event = (spec.get(k) for k in _TRIGGER_FIELDS)
        extra = spec.get("extra") or {}
        if not (
            isinstance(webhook_url, str)
            and webhook_url
            and isinstance(x_message_id, str)
            and x_message_id
            and isinstance(event, str)
            and event
        ):
            required = ", ".join(_TRIGGER_FIELDS)
            return _control_error(HTTPStatus.BAD_REQUEST, f"{required} are required")
        if not isinstance(extra, dict):
            return _control_error(HTTPStatus.BAD_REQUEST, "extra must be an object")
        message = self.find(x_message_id)
        if message is None:
            return _control_error(HTTPStatus.NOT_FOUND, f"no accepted message {x_message_id}")
        try:
            built = build_reportable_event(message, event, **extra)
        except UnreportableEvent as exc:
            return _control_error(HTTPStatus.CONFLICT, str(exc))
        try:
            status = await self.post_events(webhook_url, [built])
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _control_error(HTTPStatus.BAD_GATEWAY, f"webhook unreachable: {exc!r}")
        return web.json_response({"status": status, "event": built})


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        spec = await request.json()
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _control_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dripiq_devtools.fake_sendgrid",
        description="Local fake of SendGrid's Mail Send API and Signed Event Webhook.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--private-key-file",
        type=Path,
        help="PEM ECDSA P-256 key to sign events with; created (mode 0600) when missing",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--rate-limit", type=int, help="sends per second before answering 429")
    parser.add_argument("--api-key", help="accept only this API key (default: any bearer token)")
    parser.add_argument("--webhook-url", help="post processed and delivered events here by themselves")
    parser.add_argument(
        "--auto-events-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="flush those events this often (default 0: never)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    pem = load_or_create_private_key(args.private_key_file) if args.private_key_file else None
    fake = FakeSendGrid(
        private_key_pem=pem,
        latency_seconds=args.latency,
        rate_limit_per_second=args.rate_limit,
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        auto_events_delay_seconds=args.auto_events_delay,
    )

    def announce() -> None:
        print(f"fake SendGrid listening on {fake.url}", flush=True)
        print(f"event webhook public key: {fake.public_key_base64}", flush=True)

    await fake.serve_until_signal(args.host, args.port, announce=announce)


def main(argv: list[str] | None = None) -> int:
    # On uvloop like the services, so the fake takes less of a shared machine's CPU.
    run_process(_serve(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
