"""The fake SendGrid server: its state (accepted messages, counters, queued failures), its routes,
and Mail Send's answers (202 + X-Message-Id, 400, 401, 429, injected 5xx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web

from dripiq_devtools.fake_sendgrid import signing
from dripiq_devtools.fake_sendgrid.accounts import ACCESS_FORBIDDEN, FROM_NOT_VERIFIED, Account, Accounts
from dripiq_devtools.fake_sendgrid.control import ControlEndpoints
from dripiq_devtools.fake_sendgrid.engagement import TICK_SECONDS, Engagement, EngagementProfile
from dripiq_devtools.fake_sendgrid.errors import UNAUTHORIZED_MESSAGE, ApiError, api_error
from dripiq_devtools.fake_sendgrid.messages import AcceptedMessage, new_message_id
from dripiq_devtools.fake_sendgrid.outbox import WebhookOutbox, is_2xx, processed_then_delivered
from dripiq_devtools.fake_sendgrid.validation import validate_mail
from dripiq_devtools.local_server import LocalHttpServer

MESSAGE_ID_HEADER = "X-Message-Id"
MAIL_SEND_PATH = "/v3/mail/send"
ON_BEHALF_OF_HEADER = "On-Behalf-Of"
# SendGrid's page sizes where a request names none.
DEFAULT_DOMAIN_PAGE = 50
DEFAULT_SENDER_PAGE = 100
MAX_REQUEST_BYTES = 30 * 1024 * 1024
# Names the task that posts automatic events, so a stop can be seen to have ended it.
OUTBOX_TASK_NAME = "fake-sendgrid-webhook-outbox"
ENGAGEMENT_TASK_NAME = "fake-sendgrid-engagement"

_BEARER = re.compile(r"Bearer\s+(\S+)\s*", re.IGNORECASE)

Clock = Callable[[], float]


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
        parse_private_key_pem: bytes | None = None,
        latency_seconds: float = 0.0,
        rate_limit_per_second: int | None = None,
        api_key: str | None = None,
        clock: Clock = time.time,
        webhook_url: str | None = None,
        auto_events_delay_seconds: float = 0,
        account_open_tracking: bool = False,
        account_click_tracking: bool = False,
        authenticated_domains: dict[str, list[str]] | None = None,
        engagement: EngagementProfile | None = None,
    ) -> None:
        self.messages: list[AcceptedMessage] = []
        # Who may send as what, per API key and subuser (see `accounts`).
        self.accounts = Accounts()
        for key, domains in (authenticated_domains or {}).items():
            for domain in domains:
                self.accounts.authenticate_domain(key, domain)
        self.latency_seconds = latency_seconds
        # Every mail-send request that arrived, answered yet or not.
        self.requests_received = 0
        # Events in batches a webhook answered 2xx to, whether posted by hand or by themselves.
        self.events_posted = 0
        self.api_key = api_key
        self.account_open_tracking = account_open_tracking
        self.account_click_tracking = account_click_tracking
        self._clock = clock
        self._private_key = signing.load_private_key(private_key_pem)
        # The Parse security policy's own key pair (SendGrid makes one per policy).
        self._parse_key = signing.load_private_key(parse_private_key_pem)
        # Inbound Parse posts a receiver answered 2xx to.
        self.inbound_posted = 0
        self._limiter = _FixedWindowLimiter(rate_limit_per_second, clock) if rate_limit_per_second else None
        self._failures: deque[int] = deque()
        self.webhook_url = webhook_url
        # With a profile, each accepted message's own chain of events (see `engagement`)
        # replaces the automatic processed and delivered.
        self.engagement: Engagement | None = None
        # Every profile set so far: chains started under one go on after it is replaced.
        self.engagements: list[Engagement] = []
        if engagement is not None:
            self.engage(engagement)
        self._outbox = (
            WebhookOutbox(partial(self.post_events, webhook_url), interval_seconds=auto_events_delay_seconds)
            if webhook_url and auto_events_delay_seconds > 0
            else None
        )
        super().__init__()

    @property
    def public_key_base64(self) -> str:
        """Base64 DER SubjectPublicKeyInfo: the 'verification key' SendGrid shows in its UI."""
        return signing.public_key_base64(self._private_key)

    @property
    def private_key_pem(self) -> bytes:
        return signing.private_key_pem(self._private_key)

    @property
    def parse_public_key_base64(self) -> str:
        """The public key of the Parse security policy, as its API returns it."""
        return signing.public_key_base64(self._parse_key)

    def sign_parse(self, body: bytes, timestamp: str) -> str:
        """The Parse security policy's signature of a raw Inbound Parse body."""
        return signing.sign(self._parse_key, body, timestamp)

    def signed_inbound(self, fields: dict[str, str | bytes], *, signed: bool = True) -> tuple[bytes, dict[str, str]]:
        """An Inbound Parse post of `fields` (to, from, subject, text, headers, envelope, ...)."""
        return signing.signed_parse_request(self._parse_key if signed else None, fields, str(int(self._clock())))

    async def post_inbound(
        self,
        url: str,
        fields: dict[str, str | bytes],
        *,
        bearer_token: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> int:
        """Post one parsed mail as SendGrid's Inbound Parse does; the receiver's HTTP status."""
        body, headers = self.signed_inbound(fields)
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
        if is_2xx(response.status):
            self.inbound_posted += 1
        return response.status

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

    @property
    def failures_pending(self) -> int:
        """Failures `fail_next` queued and not yet answered."""
        return len(self._failures)

    def clear(self) -> None:
        self.messages.clear()

    def find(self, x_message_id: str) -> AcceptedMessage | None:
        return next((m for m in self.messages if m.x_message_id == x_message_id), None)

    def sign(self, body: bytes, timestamp: str) -> str:
        """SendGrid's Event Webhook signature: base64 DER ECDSA-SHA256 over timestamp + body."""
        return signing.sign(self._private_key, body, timestamp)

    def signed_request(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        """The exact bytes and headers SendGrid would post, including its trailing CRLF."""
        return signing.signed_request(self._private_key, events, str(int(self._clock())))

    async def post_events(
        self, webhook_url: str, events: list[dict[str, Any]], *, timeout_seconds: float = 10.0
    ) -> int:
        """Deliver `events` as one signed batch; returns the receiver's HTTP status."""
        body, headers = self.signed_request(events)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(webhook_url, data=body, headers=headers) as response:
                await response.read()
        if is_2xx(response.status):
            self.events_posted += len(events)
        return response.status

    def engage(self, profile: EngagementProfile | None) -> None:
        """From now on, mail accepted gets this profile's engagement (None: only the automatic
        events). Chains already under way go on under the profile they started with."""
        if profile is None:
            self.engagement = None
            return
        self.engagement = Engagement(profile, post_events=self.post_events, post_inbound=self.post_inbound)
        self.engagements.append(self.engagement)

    @property
    def events_pending(self) -> int:
        """Automatic and engagement events (and inbound mail) not yet taken by their receiver."""
        return (self._outbox.pending if self._outbox else 0) + sum(e.pending for e in self.engagements)

    @property
    def failed_posts(self) -> int:
        """Posts of automatic events the webhook refused or could not be reached for."""
        return self._outbox.failed_posts if self._outbox else 0

    def build_app(self) -> web.Application:
        control = ControlEndpoints(self)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post(MAIL_SEND_PATH, self._handle_mail_send)
        app.router.add_get("/v3/whitelabel/domains", self._list_domains)
        app.router.add_post("/v3/whitelabel/domains/{id}/validate", self._validate_domain)
        app.router.add_get("/v3/verified_senders", self._list_verified_senders)
        app.router.add_post("/_fake/domains", control.add_domain)
        app.router.add_post("/_fake/senders", control.add_sender)
        app.router.add_get("/_fake/messages", control.list_messages)
        app.router.add_get("/_fake/stats", control.stats)
        app.router.add_delete("/_fake/messages", control.clear_messages)
        app.router.add_post("/_fake/events", control.trigger_event)
        app.router.add_post("/_fake/inbound", control.post_inbound)
        app.router.add_post("/_fake/failures", control.inject_failures)
        app.router.add_post("/_fake/latency", control.set_latency)
        app.router.add_get("/_fake/public-key", control.public_key)
        app.router.add_post("/_fake/engagement", control.set_engagement)
        app.router.add_delete("/_fake/engagement", control.stop_engagement)
        app.router.add_get("/_fake/engagement", control.engagement_report)
        app.router.add_get("/_fake/engagement/log", control.engagement_log)
        app.router.add_route("*", "/v3/{tail:.*}", self._handle_unknown_api)
        app.cleanup_ctx.append(self._posting_events_automatically)
        app.cleanup_ctx.append(self._posting_engagement)
        return app

    async def _posting_engagement(self, _app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._engage_forever(), name=ENGAGEMENT_TASK_NAME)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _engage_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            for engagement in self.engagements:
                await engagement.flush()

    async def _posting_events_automatically(self, _app: web.Application) -> AsyncIterator[None]:
        """While the app runs (aiohttp's background-task idiom), flush the outbox on its timer."""
        task = asyncio.create_task(self._outbox.run(), name=OUTBOX_TASK_NAME) if self._outbox else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _authorized(self, request: web.Request) -> bool:
        return self._key(request) is not None

    def _key(self, request: web.Request) -> str | None:
        """The request's API key when the fake accepts it."""
        match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return None
        if self.api_key is not None and not secrets.compare_digest(match.group(1), self.api_key):
            return None
        return match.group(1)

    def _acting(self, request: web.Request) -> Account | web.Response:
        """The account a request acts as, or SendGrid's refusal (401 without a key it accepts)."""
        key = self._key(request)
        if key is None:
            return _errors_response(HTTPStatus.UNAUTHORIZED, [api_error(UNAUTHORIZED_MESSAGE)])
        account = self.accounts.acting(key, request.headers.get(ON_BEHALF_OF_HEADER))
        if account is None:
            return _errors_response(HTTPStatus.FORBIDDEN, [{"field": None, "message": ACCESS_FORBIDDEN}])
        return account

    async def _api_answer(self, request: web.Request) -> Account | web.Response:
        """What every call but Mail Send goes through first: latency, queued failures, the key."""
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)
        account = self._acting(request)
        if isinstance(account, web.Response):
            return account
        if self._failures:
            return self._injected_failure(self._failures.popleft())
        return account

    async def _list_domains(self, request: web.Request) -> web.Response:
        account = await self._api_answer(request)
        if isinstance(account, web.Response):
            return account
        query = request.query
        limit, offset = _int_param(query, "limit", DEFAULT_DOMAIN_PAGE), _int_param(query, "offset", 0)
        if limit is None or offset is None:
            return _errors_response(HTTPStatus.BAD_REQUEST, [{"field": None, "message": "invalid limit or offset"}])
        # A subuser (acting through On-Behalf-Of) never has subusers of its own.
        include_subusers = query.get("exclude_subusers", "false").lower() != "true"
        search = query.get("domain", "").lower()
        found = [d for d in account.listed_domains(include_subusers=include_subusers) if search in d.domain]
        return web.json_response([d.to_json() for d in found[offset : offset + limit]])

    async def _validate_domain(self, request: web.Request) -> web.Response:
        account = await self._api_answer(request)
        if isinstance(account, web.Response):
            return account
        entry = next((d for d in account.domains if str(d.id) == request.match_info["id"]), None)
        if entry is None:
            return _errors_response(
                HTTPStatus.NOT_FOUND, [{"field": None, "message": "authenticated domain not found"}]
            )
        entry.valid = entry.dns_ready
        return web.json_response(entry.validation_json())

    async def _list_verified_senders(self, request: web.Request) -> web.Response:
        account = await self._api_answer(request)
        if isinstance(account, web.Response):
            return account
        limit, last_seen = (
            _int_param(request.query, "limit", DEFAULT_SENDER_PAGE),
            _int_param(request.query, "lastSeenID", 0),
        )
        if limit is None or last_seen is None:
            return _errors_response(HTTPStatus.BAD_REQUEST, [{"field": None, "message": "invalid limit or lastSeenID"}])
        found = sorted((s for s in account.senders if s.id > last_seen), key=lambda s: s.id)[:limit]
        return web.json_response({"results": [s.to_json() for s in found]})

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
        account = self._acting(request)
        if isinstance(account, web.Response):
            return account
        return self._accept(raw, account)

    def _accept(self, raw: bytes, account: Account) -> web.Response:
        try:
            payload = json.loads(raw)
        except ValueError:
            return _errors_response(HTTPStatus.BAD_REQUEST, [api_error("Bad Request")])
        errors = validate_mail(payload, now=self._clock())
        if errors:
            return _errors_response(HTTPStatus.BAD_REQUEST, errors)
        if not account.may_send_as(str(payload["from"]["email"])):
            return _errors_response(
                HTTPStatus.FORBIDDEN, [{"message": FROM_NOT_VERIFIED, "field": "from", "help": None}]
            )
        message = AcceptedMessage(
            new_message_id(),
            payload,
            datetime.now(UTC),
            account_open_tracking=self.account_open_tracking,
            account_click_tracking=self.account_click_tracking,
            account=account.username,
        )
        self.messages.append(message)
        if self.engagement is not None:
            self.engagement.accept(message)
        elif self._outbox is not None:
            self._outbox.add(processed_then_delivered(message))
        headers = {MESSAGE_ID_HEADER: message.x_message_id}
        return web.Response(status=HTTPStatus.ACCEPTED, headers=headers)

    async def _handle_unknown_api(self, _request: web.Request) -> web.Response:
        errors: list[ApiError] = [{"field": None, "message": "resource not found"}]
        return _errors_response(HTTPStatus.NOT_FOUND, errors)


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


def _int_param(query: Any, name: str, default: int) -> int | None:
    """A non-negative integer query parameter; None when it is something else."""
    value = query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _errors_response(status: int, errors: list[ApiError], **headers: str) -> web.Response:
    return web.json_response({"errors": errors}, status=status, headers=headers or None)


def _server_error_body(status: int) -> list[ApiError]:
    """What SendGrid puts in a 5xx (or any injected) answer: only a lower-case reason phrase."""
    return [{"field": None, "message": HTTPStatus(status).phrase.lower(), "help": None}]
