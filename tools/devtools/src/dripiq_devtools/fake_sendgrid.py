"""A local stand-in for the SendGrid v3 Mail Send API and its Signed Event Webhook.

Development (`make run`) and the tests point the real `sendgrid` client at it with
`SendGridAPIClient(key, host=fake.url)`. It answers with SendGrid's status codes, headers and
error bodies, records every accepted message, and posts events back signed exactly as SendGrid
signs them, so the dispatcher and the events service run the same code paths as in production.

    python -m dripiq_devtools.fake_sendgrid --port 8025 --private-key-file .run/sendgrid.pem

Endpoints:
    POST   /v3/mail/send      SendGrid's Mail Send (202 + X-Message-Id, 400, 401, 429, 5xx)
    GET    /_fake/messages    {"messages": [...]} every accepted message
    DELETE /_fake/messages    forget them
    POST   /_fake/events      {"webhook_url", "x_message_id", "event", "extra"}
                              -> {"status": <webhook's HTTP status>, "event": {...}}
    POST   /_fake/failures    {"status", "count"}: the next sends answer with that status
    GET    /_fake/public-key  {"public_key": <base64 DER SubjectPublicKeyInfo>}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dripiq_common.service import run_process
from dripiq_devtools.local_server import LocalHttpServer

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MESSAGE_ID_HEADER = "X-Message-Id"
MAIL_SEND_PATH = "/v3/mail/send"
MAX_REQUEST_BYTES = 30 * 1024 * 1024
DEFAULT_PORT = 8025

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


def validate_mail(payload: Any) -> list[ApiError]:
    """Every problem SendGrid would report for this Mail Send body, all at once as it does."""
    if not isinstance(payload, dict):
        return [api_error("Bad Request", None)]
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


def new_message_id() -> str:
    """SendGrid's X-Message-Id: 22 characters of base64url (16 random bytes, unpadded)."""
    return secrets.token_urlsafe(16)[:22]


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """One Mail Send request the fake answered 202 to, as the sender would want to assert on it."""

    x_message_id: str
    payload: dict[str, Any]
    received_at: datetime

    @property
    def personalizations(self) -> list[dict[str, Any]]:
        return list(self.payload.get("personalizations") or [])

    @property
    def to_emails(self) -> list[str]:
        return [a["email"] for p in self.personalizations for a in p.get("to") or []]

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
            "payload": self.payload,
        }


def _recipients(personalization: dict[str, Any]) -> set[str]:
    return {
        str(address.get("email", "")).lower()
        for kind in _RECIPIENT_KINDS
        for address in personalization.get(kind) or []
    }


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


class FakeSendGrid(LocalHttpServer):
    """The fake server: Mail Send, recorded messages, and signed Event Webhook posts.

    Use `async with FakeSendGrid() as fake:` or `await fake.start()` / `await fake.stop()`.
    `api_key` set means only that key is accepted; otherwise any bearer token is.
    """

    def __init__(
        self,
        *,
        private_key_pem: bytes | None = None,
        latency_seconds: float = 0.0,
        rate_limit_per_second: int | None = None,
        api_key: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.messages: list[AcceptedMessage] = []
        self.latency_seconds = latency_seconds
        # Every mail-send request that arrived, answered yet or not.
        self.requests_received = 0
        self.api_key = api_key
        self._clock = clock
        self._private_key = _load_private_key(private_key_pem)
        self._limiter = _FixedWindowLimiter(rate_limit_per_second, clock) if rate_limit_per_second else None
        self._failures: deque[int] = deque()
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
                return response.status

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
        return app

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
        errors = validate_mail(payload)
        if errors:
            return _errors_response(HTTPStatus.BAD_REQUEST, errors)
        message = AcceptedMessage(new_message_id(), payload, datetime.now(UTC))
        self.messages.append(message)
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
        if not all(isinstance(v, str) and v for v in (webhook_url, x_message_id, event)):
            required = ", ".join(_TRIGGER_FIELDS)
            return _control_error(HTTPStatus.BAD_REQUEST, f"{required} are required")
        if not isinstance(extra, dict):
            return _control_error(HTTPStatus.BAD_REQUEST, "extra must be an object")
        message = self.find(x_message_id)
        if message is None:
            return _control_error(HTTPStatus.NOT_FOUND, f"no accepted message {x_message_id}")
        built = build_event(message, event, **extra)
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
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    pem = load_or_create_private_key(args.private_key_file) if args.private_key_file else None
    fake = FakeSendGrid(
        private_key_pem=pem,
        latency_seconds=args.latency,
        rate_limit_per_second=args.rate_limit,
        api_key=args.api_key,
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
